"""Run a function on N gloo ranks in fresh processes, as torchrun would lay them out."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import torch.multiprocessing as mp

from dist_vpg import config, train
from dist_vpg.distributed import free_port, set_rank_env


def _worker(rank: int, world_size: int, port: int, fn, args, queue, output: str) -> None:
    for fd, name in ((1, "out"), (2, "err")):  # what the rank prints, for run_ranks to pass on
        with open(f"{output}/{rank}.{name}", "w") as f:
            os.dup2(f.fileno(), fd)
    set_rank_env(rank, world_size, port)
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        result = (rank, "ok", fn(*args))
    except BaseException as e:  # the test decides what an exception means
        result = (rank, "error", (type(e).__name__, str(e), traceback.format_exc()))
    sys.stdout.flush()
    sys.stderr.flush()
    queue.put(result)


def _context():
    """Ranks start from a fork server that has imported torch and dist_vpg once: a fresh interpreter
    each, as spawn gives, without each paying the imports (about 2 s a rank on 2 cores). The server
    itself runs nothing, so no thread or process group is forked."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "dist_vpg.train", "tests.helpers"])
    return ctx


def run_ranks(world_size: int, fn, *args, timeout: float = 600) -> list:
    """fn(*args) on every rank; returns per-rank results, or ("error", (type, message, traceback))
    entries for ranks that raised. fn must be importable (module level). What the ranks print is
    printed here after they end, rank by rank, where the test's capture sees it."""
    ctx = _context()
    queue = ctx.Queue()
    port = free_port()
    with tempfile.TemporaryDirectory() as output:
        procs = [
            ctx.Process(target=_worker, args=(r, world_size, port, fn, args, queue, output))
            for r in range(world_size)
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
            for rank in range(world_size):
                for name, stream in (("out", sys.stdout), ("err", sys.stderr)):
                    path = Path(output, f"{rank}.{name}")
                    stream.write(path.read_text(errors="replace") if path.exists() else "")
                    stream.flush()
    return [results[r] for r in range(world_size)]


def raised(result) -> tuple[str, str] | None:
    """(exception type, message) if a rank's result is an error, else None."""
    if isinstance(result, tuple) and len(result) == 2 and result[0] == "error":
        return result[1][0], result[1][1]
    return None


def train_worker(path: str | None, overrides: list[str]) -> dict:
    """A whole training job on this rank, as `python -m dist_vpg.train` would run it."""
    return train.main(config.load(path, overrides))
