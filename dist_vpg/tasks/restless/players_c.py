"""The restless players' C functions (players.c, declared in players.h): the Rescorla-Wagner fits
and the exact filter's step, each in one call, built into a library of their own on first use.
players.py uses them where they are available and keeps its torch and numpy references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dist_vpg.native import build
from dist_vpg.native.interface import parse

_HERE = Path(__file__).parent
PLAYERS = build.Source(_HERE / "players.c", parse((_HERE / "players.h").read_text()))


def available() -> bool:
    """Whether the players' library builds and loads here."""
    try:
        build.load(PLAYERS)
    except build.NativeUnavailable:
        return False
    return True


def rw_fits(alphas, seen, sign, beta_max: float, steps: int, tol: float):
    """The Rescorla-Wagner fits of players.rw_fits in one C call (each learning rate's Newton
    iterations stopped on their own, from the last one's beta): seen, sign
    [T, N] float64 arrays (the outcome from arm 0's side; +1 where arm 0 was chosen, -1 for arm 1)
    -> (betas, log_likelihoods), each [len(alphas)] float64."""
    lib = build.load(PLAYERS)
    alphas, seen, sign = (np.ascontiguousarray(a, dtype=np.float64) for a in (alphas, seen, sign))
    trials, episodes = seen.shape
    betas, log_likelihoods = np.empty(len(alphas)), np.empty(len(alphas))
    x = np.empty(trials * episodes + 8)  # padded to whole vectors
    lib.dv_rw_fits(
        trials, episodes, len(alphas), *(a.ctypes.data for a in (alphas, seen, sign)), beta_max, steps, tol,
        *(a.ctypes.data for a in (x, betas, log_likelihoods)),
    )  # fmt: skip
    return betas, log_likelihoods


def filter_bands(kernels: torch.Tensor) -> torch.Tensor:
    """For `filter_update`: [2, ceil(G / 16), 2] int32, the first row and the row past the last where
    each strip of 16 columns of each kernel [2, G, G] is not all zeros (0, 0 for an all-zero strip)."""
    grid = kernels.shape[-1]
    bands = torch.zeros(2, -(-grid // 16), 2, dtype=torch.int32)
    for c in range(2):
        for strip in range(bands.shape[1]):
            rows = torch.nonzero((kernels[c, :, strip * 16 : strip * 16 + 16] != 0).any(1))
            if len(rows):
                bands[c, strip] = torch.tensor([int(rows[0]), int(rows[-1]) + 1])
    return bands


def filter_update(
    belief: torch.Tensor,
    outcome: torch.Tensor,
    centres: torch.Tensor,
    kernels: torch.Tensor,
    bands: torch.Tensor,
) -> torch.Tensor:
    """Restless bandits' filter step (players.Filter.update) in one C call:
    belief [B, 2, G] float64 (G a multiple of 8), outcome [B] (the reward from arm 0's side), the
    grid's centres [G], the two step kernels [2, G, G] and their `filter_bands` -> the next trial's
    belief [B, 2, G]."""
    lib = build.load(PLAYERS)
    batch, _, grid = belief.shape
    if grid % 8:
        raise ValueError(f"the native filter needs a grid of a multiple of 8 cells, not {grid}")
    belief, outcome = belief.contiguous(), outcome.to(torch.float64).contiguous()
    centres, kernels, bands = centres.contiguous(), kernels.contiguous(), bands.contiguous()
    out = torch.empty_like(belief)
    scratch = torch.empty((batch + 16) * 2 * grid, dtype=torch.float64)
    lib.dv_filter_update(
        batch, grid, *(t.data_ptr() for t in (belief, outcome, centres, kernels, bands, out, scratch))
    )
    return out
