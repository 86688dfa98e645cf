"""The shared reward tracker: a real BaseManager server on loopback."""

import socket
import time

import pytest

from dist_vpg import tracker
from dist_vpg.tracker import RewardTracker, TrackerClient, TrackerError


@pytest.fixture
def server():
    manager, address, key = tracker.start_server("127.0.0.1", 0, smoothing=0.5)
    yield address, key
    manager.shutdown()


@pytest.mark.slow
def test_reports_make_a_global_picture(server):
    address, key = server
    a, b = TrackerClient(address, key), TrackerClient(address, key)
    a.report(0, 1, 10, 500.0)  # 10 episodes, mean return 50
    b.report(1, 1, 10, 700.0)  # mean 70
    a.report(0, 2, 10, 600.0)  # mean 60
    snap = a.snapshot()  # queued after a's reports; wait until b's is in too
    for _ in range(100):
        if snap["episodes_total"] == 30:
            break
        time.sleep(0.01)
        snap = a.snapshot()
    assert snap["episodes_total"] == 30
    assert snap["episodes_per_rank"] == {0: 20, 1: 10}
    assert snap["updates_per_rank"] == {0: 2, 1: 1}
    assert snap["best_return"] == 70.0
    assert set(snap["seconds_since_report"]) == {0, 1}


def test_ema_and_state_roundtrip():
    t = RewardTracker(smoothing=0.5)
    t.report(0, 1, 4, 40.0)
    t.report(0, 2, 4, 80.0)
    assert t.ema_return == pytest.approx(15.0)  # 10, then 0.5 * 10 + 0.5 * 20
    assert t.latest_return == 20.0 and t.best_return == 20.0
    u = RewardTracker()
    u.load_state_dict(t.state_dict())
    assert u.snapshot()["ema_return"] == t.ema_return and u.episodes == {0: 8}


@pytest.mark.slow
def test_wrong_authkey_is_refused(server):
    address, _ = server
    with pytest.raises(TrackerError, match="wrong authkey"):
        TrackerClient(address, b"not the key" * 3)


def test_unreachable_tracker_names_its_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    with pytest.raises(TrackerError, match=f"127.0.0.1:{port} cannot be reached"):
        TrackerClient(("127.0.0.1", port), b"k" * 32)


def test_silent_tracker_times_out_instead_of_hanging():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)  # accepts the TCP connection, never says a word
        with pytest.raises(TrackerError, match="did not answer within 0.5s"):
            TrackerClient(s.getsockname(), b"k" * 32, timeout_s=0.5)


def test_optional_tracker_warns_once_and_steps_aside():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    warnings = []
    client = TrackerClient(("127.0.0.1", port), b"k" * 32, required=False, warn=warnings.append)
    client.report(0, 1, 1, 1.0)
    assert client.snapshot() is None and client.state_dict() is None
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0]


@pytest.mark.slow
def test_server_binds_only_to_its_address(server):
    (host, port), _ = server
    assert host == "127.0.0.1"
    with socket.socket() as s:  # the same port on another local address is free: nothing bound there
        s.bind(("127.0.0.2", port))


def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(TrackerError, match=f"cannot listen on 127.0.0.1:{port}"):
            tracker.start_server("127.0.0.1", port, 0.1)
