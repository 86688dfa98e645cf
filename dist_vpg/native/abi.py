"""What a task's native step hands kernels.c: the task's kind and its per-episode state, as the C
struct `TaskState` of interface.h lays them out. Here, below the tasks, so that each task that has a native
step (dist_vpg.tasks) fills it in without the native rollout knowing any task by name."""

from __future__ import annotations

import torch

from dist_vpg.native.interface import DECLARED

# interface.h's task kinds and its TaskState: what a task's native_state names and fills in
BANDIT, TWO_STEP, PAYOUTS, RESTLESS, HARLOW = (
    DECLARED.constants[f"TASK_{kind}"] for kind in ("BANDIT", "TWO_STEP", "PAYOUTS", "RESTLESS", "HARLOW")
)
TaskState = DECLARED.structs["TaskState"]


def floats(t: torch.Tensor, keep: list) -> int:
    """The address of a float32, contiguous copy of `t`, kept alive in `keep` until the C call returns."""
    t = t.float().contiguous().clone()
    keep.append(t)
    return t.data_ptr()


def longs(t: torch.Tensor, keep: list) -> int:
    """As `floats`, for int64 (the kernel's per-episode flags and indices, updated in place)."""
    t = t.to(torch.int64).contiguous().clone()
    keep.append(t)
    return t.data_ptr()
