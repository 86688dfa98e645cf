"""What a task's native step hands kernels.c: the task's kind and its per-episode state, as the C
struct `TaskState` lays them out. Defined here, below the tasks, so that each task that has a native
step (dist_vpg.tasks) fills it in without the native rollout knowing any task by name."""

from __future__ import annotations

import ctypes

import torch

# kernels.c's task kinds (enum in kernels.c)
BANDIT, TWO_STEP, PAYOUTS, RESTLESS, HARLOW = 0, 1, 2, 3, 4

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
        ("first_obs", _ptr),
        ("obs", ctypes.c_int32),
        ("p", _ptr),
        ("drift", _ptr),
        ("objects", _ptr),
        ("left", _ptr),
        ("features", ctypes.c_int32),
        ("fixation", ctypes.c_int32),
    ]


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
