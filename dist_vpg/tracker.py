"""A shared reward tracker: one server per job, every rank a client, one batched report per update.

Rank 0 starts the server (a multiprocessing BaseManager in its own process) bound to the master's
address only, with a random authkey it hands to the other ranks over the process group; each rank
then connects its own proxy (a proxy passed between processes would lose its key). Traffic is
authenticated with HMAC but not encrypted: keep the tracker on a trusted network.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from typing import Any

from dist_vpg import distributed
from dist_vpg.config import TrackerConfig

CONNECT_TIMEOUT_S = 10.0  # default for connecting and for each call that waits for an answer


class TrackerError(RuntimeError):
    """The tracker cannot be reached or refused us; the message names the address."""


class RewardTracker:
    """The job-wide picture of the episodes played. Lives in the server process."""

    def __init__(self, smoothing: float = 0.05):
        self.smoothing = smoothing
        self.episodes: dict[int, int] = {}
        self.updates: dict[int, int] = {}
        self.last_seen: dict[int, float] = {}
        self.gave_up: dict[int, float] = {}  # rank -> when one of its collectives failed
        self.ema_return = math.nan
        self.best_return = -math.inf
        self.latest_return = math.nan

    def report(self, rank: int, update: int, episodes: int, return_sum: float) -> None:
        """One rank's episodes of one update: how many, and the sum of their returns."""
        self.episodes[rank] = self.episodes.get(rank, 0) + episodes
        self.updates[rank] = update
        self.last_seen[rank] = time.time()
        if episodes:
            mean = return_sum / episodes
            self.latest_return = mean
            self.best_return = max(self.best_return, mean)
            a = self.smoothing
            self.ema_return = mean if math.isnan(self.ema_return) else (1 - a) * self.ema_return + a * mean

    def give_up(self, rank: int) -> None:
        """A rank's collective failed (timed out, or a peer left)."""
        self.gave_up[rank] = time.time()

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        return {
            "gave_up": dict(self.gave_up),
            "episodes_total": sum(self.episodes.values()),
            "episodes_per_rank": dict(self.episodes),
            "updates_per_rank": dict(self.updates),
            "seconds_since_report": {r: now - t for r, t in self.last_seen.items()},
            "ema_return": self.ema_return,
            "best_return": self.best_return,
            "latest_return": self.latest_return,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "smoothing": self.smoothing,
            "episodes": dict(self.episodes),
            "updates": dict(self.updates),
            "ema_return": self.ema_return,
            "best_return": self.best_return,
            "latest_return": self.latest_return,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.smoothing = state["smoothing"]
        self.episodes = {int(k): int(v) for k, v in state["episodes"].items()}
        self.updates = {int(k): int(v) for k, v in state["updates"].items()}
        self.ema_return = state["ema_return"]
        self.best_return = state["best_return"]
        self.latest_return = state["latest_return"]


class _Manager(BaseManager):
    pass


_SERVED: RewardTracker | None = None


def _served(smoothing: float | None = None) -> RewardTracker:
    """The server's one tracker; the first call (by start_server) sets its smoothing."""
    global _SERVED
    if _SERVED is None:
        _SERVED = RewardTracker(0.05 if smoothing is None else smoothing)
    return _SERVED


_Manager.register("tracker", callable=_served)


def _server_process_setup() -> None:
    """In the server process. torchrun signals a worker's whole process group, and the server must
    outlive rank 0's last checkpoint, which reads it: it ignores SIGINT and SIGTERM, is stopped by
    rank 0 (manager.shutdown), and leaves on its own if rank 0 dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()

    def exit_with_parent():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()


def start_server(host: str, port: int, smoothing: float) -> tuple[BaseManager, tuple[str, int], bytes]:
    """Start the server process bound to host:port (port 0: a free one). Returns the manager (keep
    it alive; .shutdown() stops the server), the bound address and the authkey. The server is a
    fork: call this before the process group starts, while the rank has no threads of its own."""
    # The server binds in its own process, where a failure is a traceback there and an EOFError
    # here; try the address here first for a clear error. With port 0 the port is chosen here too,
    # never the process group's MASTER_PORT: the server starts before the group's store binds it.
    taken = os.environ.get("MASTER_PORT", "")
    for _ in range(10):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except (OSError, OverflowError, TypeError, ValueError) as e:  # unreachable, unencodable, ...
                reason = getattr(e, "strerror", None) or str(e)
                raise TrackerError(f"tracker cannot listen on {host}:{port}: {reason}") from None
            chosen = probe.getsockname()[1]
        if port or str(chosen) != taken:
            port = chosen
            break
    authkey = os.urandom(32)
    manager = _Manager(address=(host, port), authkey=authkey, ctx=multiprocessing.get_context("fork"))
    try:
        manager.start(_server_process_setup)
    except (OSError, EOFError) as e:
        raise TrackerError(
            f"tracker cannot listen on {host}:{port}: {str(e) or 'the server process failed to start'}"
        ) from None
    manager.tracker(smoothing)  # create it now, with the configured smoothing
    return manager, manager.address, authkey


class TrackerClient:
    """This rank's handle on the tracker.

    One background thread owns the connection and makes every call, so a slow or dead tracker
    never blocks training: reports are queued and return at once; calls that need an answer wait
    at most timeout_s. With required=False a failure is one warning, after which the client does
    nothing; with required=True it raises TrackerError on the rank's next call.
    """

    def __init__(
        self,
        address: tuple[str, int],
        authkey: bytes,
        required: bool = True,
        timeout_s: float = CONNECT_TIMEOUT_S,
        warn=print,
    ):
        self.where = f"{address[0]}:{address[1]}"
        self.required = required
        self.timeout_s = timeout_s
        self.warn = warn
        self.error: str | None = None
        self._requests: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve, args=(tuple(address), authkey), daemon=True).start()
        self._call("snapshot", wait=True)  # connected, authenticated and answering, or an error

    def _serve(self, address, authkey) -> None:
        proxy = None
        while True:
            method, args, reply = self._requests.get()
            try:
                if proxy is None:
                    manager = _Manager(address=address, authkey=authkey)
                    manager.connect()
                    proxy = manager.tracker()
                result, error = getattr(proxy, method)(*args), None
            except Exception as e:  # refused, unreachable, wrong key, server gone
                result, error = None, e
            if reply is not None:
                reply.put((result, error))
            elif error is not None:
                self._fail(method, error)

    def _fail(self, method: str, error) -> None:
        if self.error is not None:
            return
        if type(error).__name__ == "AuthenticationError":
            self.error = f"tracker at {self.where} refused the connection: wrong authkey"
        elif isinstance(error, TimeoutError):
            self.error = f"tracker at {self.where} did not answer within {self.timeout_s:g}s ({method})"
        else:
            self.error = f"tracker at {self.where} cannot be reached ({method}: {error})"
        if not self.required:
            self.warn(f"dist_vpg: warning: {self.error}; going on without the tracker")

    def _call(self, method: str, *args, wait: bool = False):
        if self.error is not None:
            if self.required:
                raise TrackerError(self.error)
            return None
        if not wait:
            self._requests.put((method, args, None))
            return None
        reply: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((method, args, reply))
        try:
            result, error = reply.get(timeout=self.timeout_s)
        except queue.Empty:
            result, error = None, TimeoutError()
        if error is not None:
            self._fail(method, error)
            return self._call(method, *args, wait=True)  # raises, or returns None when optional
        return result

    def report(self, rank: int, update: int, episodes: int, return_sum: float) -> None:
        """Queued; returns at once."""
        self._call("report", rank, update, episodes, return_sum)

    def snapshot(self) -> dict[str, Any] | None:
        return self._call("snapshot", wait=True)

    def give_up(self, rank: int) -> None:
        self._call("give_up", rank, wait=True)

    def state_dict(self) -> dict[str, Any] | None:
        return self._call("state_dict", wait=True)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._call("load_state_dict", state, wait=True)


class NoTracker:
    """Stands in when the tracker is disabled: every call does nothing."""

    error = None

    def report(self, *args) -> None:
        pass

    def snapshot(self) -> None:
        return None

    def give_up(self, rank: int) -> None:
        pass

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state) -> None:
        pass


def explain_timeout(snapshot: dict[str, Any] | None, world_size: int, timeout_s: float) -> str:
    """Name the rank(s) a timed-out collective waited for: every rank whose collective failed has
    said so to the tracker (give_up); the ones that did not are still stuck elsewhere."""
    head = f"a collective timed out after {timeout_s:g} s (sync.timeout_s)"
    if not snapshot:
        return f"{head}; which rank hung is unknown without the tracker (tracker.enabled=true names it)"
    hung = [r for r in range(world_size) if r not in snapshot["gave_up"]]
    if not hung:
        return f"{head}; every rank was waiting in a collective"
    updates, silent = snapshot["updates_per_rank"], snapshot["seconds_since_report"]
    who = ", ".join(
        f"rank {r} (last finished update {updates[r]}, {silent[r]:.0f} s ago)"
        if r in updates
        else f"rank {r}"
        for r in hung
    )
    return f"{head} waiting for {who}, which never reached it"


def resolve_address(host: str, port: int) -> tuple[str, int]:
    """Config first, then DIST_VPG_TRACKER_HOST/PORT, then the master's address and a free port."""
    env = os.environ
    host = host or env.get("DIST_VPG_TRACKER_HOST") or env.get("MASTER_ADDR") or "127.0.0.1"
    port = port or int(env.get("DIST_VPG_TRACKER_PORT", "0") or 0)
    return host, port


# after a collective fails: time for the other ranks' failures to be told
GIVE_UP_GRACE_S = 2.0


@dataclass
class ServerStart:
    """What rank 0's attempt to start the job's tracker server left: the server, or why it failed
    (which connect() tells every rank). Other ranks, and runs without a tracker, hold an empty one."""

    manager: BaseManager | None = None
    address: tuple[str, int] | None = None
    authkey: bytes | None = None
    error: str | None = None

    def shutdown(self) -> None:
        if self.manager is not None:
            self.manager.shutdown()


def start_for_run(cfg: TrackerConfig) -> ServerStart:
    """Rank 0: start the server, or keep the error for connect() to hand to every rank."""
    host, port = resolve_address(cfg.host, cfg.port)
    try:
        return ServerStart(*start_server(host, port, cfg.smoothing))
    except TrackerError as e:
        return ServerStart(error=str(e))


def connect(cfg: TrackerConfig, world: distributed.World, server: ServerStart, say):
    """Every rank's client. The address and the random authkey travel over the process group,
    never through a log. A required tracker that any rank cannot reach stops every rank."""
    if not cfg.enabled:
        return NoTracker()
    # rank 0 hands every rank the address and key, or the reason the server did not start
    info = distributed.broadcast_object(
        (server.error or (server.address, server.authkey)) if world.is_main else None
    )
    client, error = NoTracker(), info if isinstance(info, str) else None
    if error is None:
        try:
            client = TrackerClient(info[0], info[1], cfg.required, cfg.timeout_s, warn=print)
            error = client.error
        except TrackerError as e:
            error = str(e)
    reached = distributed.all_sum([0.0 if error else 1.0])[0]
    if reached < world.world_size and cfg.required:
        raise TrackerError(
            error
            or f"the tracker is unreachable from {world.world_size - reached:.0f} "
            "other rank(s) (tracker.required=false runs without it)"
        )
    if error and world.is_main:
        say(f"dist_vpg: warning: {error}; going on without the tracker")
    return client


@contextmanager
def timeouts_named(shared, world: distributed.World, timeout_s: float):
    """gloo's timeout error says only "Timed out waiting ...". Every rank whose collective fails
    tells the tracker so; after a moment for the others to do the same, the ranks that never did are
    the ones that hung, and the timeout names them."""
    try:
        yield
    except RuntimeError as e:
        shared.give_up(world.rank)
        if "Timed out" not in str(e):
            raise
        time.sleep(GIVE_UP_GRACE_S)
        message = explain_timeout(shared.snapshot(), world.world_size, timeout_s)
        raise distributed.CollectiveTimeout(message) from None
