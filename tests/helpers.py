"""Run a function on N gloo ranks in spawned processes, as torchrun would lay them out."""

from __future__ import annotations

import os
import traceback

import torch.multiprocessing as mp

from dist_vpg import config, train
from dist_vpg.distributed import free_port, set_rank_env


def _worker(rank: int, world_size: int, port: int, fn, args, queue) -> None:
    set_rank_env(rank, world_size, port)
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        queue.put((rank, "ok", fn(*args)))
    except BaseException as e:  # the test decides what an exception means
        queue.put((rank, "error", (type(e).__name__, str(e), traceback.format_exc())))


def run_ranks(world_size: int, fn, *args, timeout: float = 600) -> list:
    """fn(*args) on every rank; returns per-rank results, or ("error", (type, message, traceback))
    entries for ranks that raised. fn must be importable (module level)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, world_size, port, fn, args, queue)) for r in range(world_size)
    ]
    for p in procs:
        p.start()
    results = {}
    try:
        for _ in procs:
            rank, status, value = queue.get(timeout=timeout)
            results[rank] = value if status == "ok" else ("error", value)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return [results[r] for r in range(world_size)]


def raised(result) -> tuple[str, str] | None:
    """(exception type, message) if a rank's result is an error, else None."""
    if isinstance(result, tuple) and len(result) == 2 and result[0] == "error":
        return result[1][0], result[1][1]
    return None


def train_worker(path: str | None, overrides: list[str]) -> dict:
    """A whole training job on this rank, as `python -m dist_vpg.train` would run it."""
    return train.main(config.load(path, overrides))
