"""Threads and cores per rank, so that the ranks of one node do not fight over cores; and an
allocator that keeps freed memory, so that an update does not pay page faults.

Each local rank gets its own disjoint block of the cores this node may use and as many intra-op
threads as its block has cores. The pinning is done with psutil after torch is imported: the OpenMP
affinity variables (GOMP_CPU_AFFINITY, KMP_AFFINITY, OMP_PROC_BIND) can shrink a whole process to one
core when torch loads, so they are left alone, and a warning names any that is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import warnings
from dataclasses import dataclass

import psutil
import torch

from dist_vpg import distributed
from dist_vpg.config import ConfigError

OPENMP_AFFINITY_VARS = ("GOMP_CPU_AFFINITY", "KMP_AFFINITY", "OMP_PROC_BIND")


@dataclass(frozen=True)
class Plan:
    local_rank: int
    cores: tuple[int, ...] | None  # None: not pinned
    threads: int
    warning: str = ""

    def describe(self) -> str:
        where = "any core" if self.cores is None else "cores " + ",".join(map(str, self.cores))
        return f"local rank {self.local_rank}: {self.threads} thread(s) on {where}"


def available_cores() -> list[int]:
    """The cores this process may run on (its affinity mask), in order."""
    return sorted(psutil.Process().cpu_affinity())


def plan(
    local_rank: int, local_ranks: int, affinity, threads: int = 0, cores: list[int] | None = None
) -> Plan:
    """Where local rank `local_rank` of `local_ranks` runs.

    affinity: "auto" (split the available cores), "none" (no pinning), or an explicit list of cores
    to split among the local ranks. threads: 0 means one per core of the rank's block.
    """
    cores = available_cores() if cores is None else list(cores)
    if affinity == "none":
        return Plan(local_rank, None, threads or max(1, len(cores) // local_ranks))
    pool = cores if affinity == "auto" else sorted(int(c) for c in affinity)
    missing = sorted(set(pool) - set(cores))
    if missing:
        raise ConfigError(
            f"cpu.affinity: core(s) {missing} not available to this process "
            f"(available: {','.join(map(str, cores))})"
        )
    warning = ""
    if local_ranks > len(pool):
        warning = (
            f"{local_ranks} ranks on {len(pool)} core(s): ranks share cores and slow each other; "
            "fine for correctness runs, not for throughput"
        )
        block = [pool[local_rank % len(pool)]]
    else:
        per_rank = len(pool) // local_ranks
        block = pool[local_rank * per_rank : (local_rank + 1) * per_rank]
    return Plan(local_rank, tuple(block), threads or len(block), warning)


def apply(p: Plan) -> None:
    """Pin this process and set its thread count. Call before the first torch operation."""
    for name in OPENMP_AFFINITY_VARS:
        if name in os.environ:
            warnings.warn(
                f"{name} is set: OpenMP may confine the process to one core; "
                "dist_vpg pins ranks itself (cpu.affinity)",
                stacklevel=2,
            )
    os.environ["OMP_NUM_THREADS"] = str(p.threads)  # for any process this one starts
    torch.set_num_threads(p.threads)
    if p.cores is not None:
        psutil.Process().cpu_affinity(list(p.cores))


# glibc's mallopt parameters
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
RETAIN_BYTES = 1 << 30


def retain_freed_memory() -> bool:
    """Have glibc's malloc serve large blocks from the heap and keep freed memory for reuse. By
    default it maps blocks above a threshold it adapts as the process runs and unmaps them on free:
    every update's multi-megabyte tensors then fault in fresh zeroed pages, and a process whose
    threshold stayed low takes up to twice as long over backward as one whose threshold rose (4.8
    to 9.1 ms at 64 episodes, measured over six 1-rank jobs; with this setting, 4.8 to 5.9). Between
    ranks that difference is time spent waiting at the synchronization. The cost: memory freed
    stays with the process, up to 1 GiB above what it uses. False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return all(mallopt(param, RETAIN_BYTES) == 1 for param in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD))


def gather_plans(plan: Plan, world: distributed.World) -> list[str]:
    """Every rank's thread plan, for rank 0 to log."""
    plans = [None] * world.world_size
    torch.distributed.all_gather_object(plans, (world.rank, plan.describe(), plan.warning))
    lines = [f"rank {rank}: {text}" for rank, text, _ in plans]
    lines += [f"warning: {warning}" for warning in dict.fromkeys(w for _, _, w in plans if w)]
    return lines
