import pytest

from dist_vpg.sync import NonFiniteError, SkipGuard


def test_skip_guard_stops_only_after_too_many_in_a_row():
    guard = SkipGuard(limit=2)
    for applied in (False, False, True, False, False):
        guard.record(applied)
    assert guard.total == 4 and guard.in_row == 2
    with pytest.raises(NonFiniteError, match="3 updates in a row"):
        guard.record(False)
