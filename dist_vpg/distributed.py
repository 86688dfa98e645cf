"""Process-group setup: the ranks torchrun describes in the environment, or one plain process."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


class CollectiveTimeout(RuntimeError):
    """A collective waited longer than sync.timeout_s; the message names the rank(s) waited for."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    """The ranks as torchrun announces them (RANK, WORLD_SIZE, ...); one process when it does not."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return World()
    world_size = int(env["WORLD_SIZE"])
    return World(
        int(env["RANK"]),
        world_size,
        int(env.get("LOCAL_RANK", 0)),
        int(env.get("LOCAL_WORLD_SIZE", world_size)),
    )


def set_rank_env(rank: int, world_size: int, port: int, host: str = "127.0.0.1") -> None:
    """The variables torchrun gives local rank `rank` of a one-node job, for processes started
    without torchrun (tests, benchmarks)."""
    os.environ.update(
        MASTER_ADDR=host,
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
    )


def init(world: World, timeout_s: float) -> None:
    """Start the gloo process group. A plain process gets a one-rank group over an in-memory store,
    so every code path below runs the same collectives whatever the world size."""
    timeout = timedelta(seconds=timeout_s)
    if "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        dist.init_process_group("gloo", rank=world.rank, world_size=world.world_size, timeout=timeout)
    else:
        if world.world_size != 1:
            raise RuntimeError("WORLD_SIZE > 1 needs MASTER_ADDR and MASTER_PORT: launch with torchrun")
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s obj on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def decided_by_main(world: World, decide, errors: tuple[type[Exception], ...]):
    """Rank 0 runs decide() and every rank gets its result; when it raises one of `errors`, every
    rank raises that error at the same point, so none is left waiting in a collective."""
    outcome = None
    if world.is_main:
        try:
            outcome = decide()
        except errors as e:
            outcome = e
    outcome = broadcast_object(outcome)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over all ranks, in float64: global totals from per-rank parts."""
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (it may be taken before it is used)."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct TCP ports nobody listens on right now, for jobs started side by side: all n are
    held at once while they are chosen, so no two jobs get the same one (two free_port calls in
    parallel can)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
