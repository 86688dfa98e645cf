"""Counter-based random numbers: each draw is a pure function of where it sits.

Episode i of update u must meet the same task, the same reward draws and the same action noise
whichever rank rolls it out and however many ranks share the batch. A stateful generator cannot
promise that; a hash of the draw's coordinates (seed, split, update, episode, trial, stream) can,
and it vectorizes over the whole batch for free.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dist_vpg.native import build
from dist_vpg.native.interface import parse

_HERE = Path(__file__).parent
_IN_C = build.Source(_HERE / "noise.c", parse((_HERE / "noise.h").read_text()))  # dv_uniforms

# Splits: evaluation (EVAL) never sees a training episode, nor one that periodic evaluation during
# training (VALID) may have steered a choice of checkpoint by.
TRAIN, EVAL, VALID = 0, 1, 2

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = (np.uint64(s) for s in (30, 27, 31, 40))

# What each stream of draws is for; a new purpose takes a new number.
_EPISODE, _TRIAL, _ACTION = 0, 1, 2


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 with full avalanche (arrays wrap silently)."""
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def _absorb(h: np.ndarray, value) -> np.ndarray:
    return _mix(h ^ _mix(np.asarray(value, dtype=np.uint64) + _GOLDEN))


_BITS = (1 << 64) - 1


def _mix_int(x: int) -> int:
    """_mix of one value, in Python integers: for the few values of a key, far cheaper than arrays."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _BITS
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _BITS
    return x ^ (x >> 31)


def _key_hash(key: tuple[int, ...]) -> np.ndarray:
    h = 0
    for part in key:  # _absorb, one part at a time (a negative part wraps as a uint64 would)
        h = _mix_int(h ^ _mix_int(((part & _BITS) + 0x9E3779B97F4A7C15) & _BITS))
    return np.array([h], dtype=np.uint64)


@lru_cache(maxsize=32)
def _per_cell(rows: int, cols: int) -> np.ndarray:
    cells = np.arange(rows * cols, dtype=np.uint64).reshape(rows, 1, cols)
    return _mix(cells + _GOLDEN)  # [rows, 1, cols]


def uniforms(key: tuple[int, ...], episodes: np.ndarray, rows: int, cols: int) -> torch.Tensor:
    """Uniform floats in [0, 1), shape [rows, B, cols]; entry [r, b, c] depends only on
    (key, episodes[b], r, c). In one C call (noise.c's dv_uniforms: the same bits) where the native
    build is available, else in numpy, the reference (`uniforms_reference`)."""
    try:
        lib = build.load(_IN_C)
    except build.NativeUnavailable:
        return uniforms_reference(key, episodes, rows, cols)
    episodes = np.ascontiguousarray(episodes, dtype=np.int64)
    cells = _per_cell(rows, cols)  # [rows, 1, cols], contiguous
    out = torch.empty(rows, len(episodes), cols)
    per_episode = np.empty(len(episodes), dtype=np.uint64)
    lib.dv_uniforms(
        int(_key_hash(key)[0]), len(episodes), episodes.ctypes.data, rows, cols, cells.ctypes.data,
        per_episode.ctypes.data, out.data_ptr(),
    )  # fmt: skip
    return out


def uniforms_reference(key: tuple[int, ...], episodes: np.ndarray, rows: int, cols: int) -> torch.Tensor:
    """`uniforms` in numpy."""
    per_episode = _absorb(_key_hash(key), np.asarray(episodes, dtype=np.int64).astype(np.uint64))  # [B]
    bits = _mix(per_episode.reshape(1, -1, 1) ^ _per_cell(rows, cols))  # [rows, B, cols]
    # 24 bits make a float32 in [0, 1) exactly, never rounding up to 1.
    return torch.from_numpy((bits >> _S40).astype(np.float32) * np.float32(2.0**-24))


class Noise(NamedTuple):
    """All the randomness of a batch of episodes, drawn before the first trial."""

    episode: torch.Tensor  # [B, episode_draws]: task parameters
    trial: torch.Tensor  # [T, B, trial_draws]: rewards, transitions
    action: torch.Tensor  # [T, B]: inverse-CDF samples of the agent's action


def draw(
    seed: int,
    split: int,
    update: int,
    episodes: np.ndarray,
    trials: int,
    episode_draws: int,
    trial_draws: int,
    episodes_per_task: int = 1,
) -> Noise:
    """The noise of episodes `episodes` (global indices) of `update`. With episodes_per_task = K,
    episodes K*g .. K*g + K - 1 meet the same task (its parameters are drawn for g), each with its
    own rewards and action noise."""
    key = (seed, split, update)
    tasks = np.asarray(episodes) // episodes_per_task
    return Noise(
        episode=uniforms((*key, _EPISODE), tasks, 1, episode_draws)[0],
        trial=uniforms((*key, _TRIAL), episodes, trials, trial_draws),
        action=uniforms((*key, _ACTION), episodes, trials, 1)[..., 0],
    )


def with_mirrors(draws: Noise, mirror) -> Noise:
    """`draws` with episodes 1, 3, 5, ... replaced by the mirror images of episodes 0, 2, 4, ...:
    `mirror(noise) -> noise` is the task's (TaskUnit.mirror). The batch must hold whole pairs."""
    if draws.action.shape[1] % 2:
        raise ValueError(f"{draws.action.shape[1]} episodes do not make whole pairs")
    even = Noise(draws.episode[0::2], draws.trial[:, 0::2], draws.action[:, 0::2])
    mirrored = mirror(even)
    episode, trial, action = draws.episode.clone(), draws.trial.clone(), draws.action.clone()
    episode[1::2], trial[:, 1::2], action[:, 1::2] = mirrored.episode, mirrored.trial, mirrored.action
    return Noise(episode, trial, action)
