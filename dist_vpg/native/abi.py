"""What a task's native step hands kernels.c: the task's kind and its per-episode state, as the C
struct `TaskState` lays them out. Defined here, below the tasks, so that each task that has a native
step (dist_vpg.tasks) fills it in without the native rollout knowing any task by name."""

from __future__ import annotations

import ctypes

import torch

# kernels.c's task kinds (enum in kernels.c)
BANDIT, TWO_STEP = 0, 1

_ptr = ctypes.c_void_p


class TaskState(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int32),
        ("trial_draws", ctypes.c_int32),
        ("arm_probs", _ptr),
        ("best", _ptr),
        ("good", _ptr),
        ("common_prob", ctypes.c_float),
        ("reward_high", ctypes.c_float),
        ("reward_low", ctypes.c_float),
        ("swap_prob", ctypes.c_float),
    ]


def address(t: torch.Tensor | None) -> int | None:
    """The address of a contiguous tensor's data, for a pointer field; the caller keeps the tensor."""
    return None if t is None else t.data_ptr()
