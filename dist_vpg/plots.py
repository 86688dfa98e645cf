"""Pictures of episodes, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def saved_figure(path: Path, **subplots):
    """(fig, axes) from plt.subplots(**subplots); on exit, laid out, saved to path as PNG, closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def episode_raster(actions: np.ndarray, rewards: np.ndarray, path: Path, title: str = "") -> Path:
    """One row per episode, one cell per trial: colour = chosen action, dot = rewarded.

    actions, rewards: [T, B].
    """
    actions, rewards = np.asarray(actions), np.asarray(rewards)
    trials, episodes = actions.shape
    with saved_figure(path, figsize=(8, max(2.5, min(12, 0.12 * episodes + 1)))) as (_, ax):
        _draw_raster(
            ax,
            actions,
            rewards,
            title or f"{episodes} episodes, {trials} trials (colour: action; dot: rewarded)",
        )
    return path


def _draw_raster(ax, actions: np.ndarray, rewards: np.ndarray, title: str) -> None:
    ax.imshow(actions.T, aspect="auto", interpolation="nearest", cmap="tab10", vmin=0, vmax=9)
    ep, tr = np.nonzero(rewards.T > 0)
    ax.scatter(tr, ep, s=2, c="black", marker=".", linewidths=0)
    ax.set(xlabel="trial", ylabel="episode", title=title)
