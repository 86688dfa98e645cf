import socket

import pytest

from dist_vpg.distributed import free_ports
from dist_vpg.sync import NonFiniteError, SkipGuard


def test_skip_guard_stops_only_after_too_many_in_a_row():
    guard = SkipGuard(limit=2)
    for applied in (False, False, True, False, False):
        guard.record(applied)
    assert guard.total == 4 and guard.in_row == 2
    with pytest.raises(NonFiniteError, match="3 updates in a row"):
        guard.record(False)


def test_ports_chosen_together_are_distinct_and_free():
    """Jobs started side by side (benchmarks/bench_scaling.py) take their rendezvous ports from one
    free_ports call: none repeats, and each can be bound once the call returns."""
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
