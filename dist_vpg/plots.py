"""Pictures of episodes, drawn with matplotlib's Agg backend (no display needed): the figures every
task shares. A task's own figures live with the task (dist_vpg.tasks), drawn with `saved_figure`."""

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
    """Episodes as rows, trials as columns counted from 1 as play and regret.png count them, each
    cell coloured by the action chosen (a legend names the colours), a dot where it paid."""
    import matplotlib
    from matplotlib.patches import Patch

    trials, episodes = actions.shape
    extent = (0.5, trials + 0.5, episodes - 0.5, -0.5)
    ax.imshow(actions.T, aspect="auto", interpolation="nearest", cmap="tab10", vmin=0, vmax=9, extent=extent)
    ep, tr = np.nonzero(rewards.T > 0)
    ax.scatter(tr + 1, ep, s=2, c="black", marker=".", linewidths=0)
    ax.set(xlabel="trial", ylabel="episode", title=title)
    colours = matplotlib.colormaps["tab10"]
    chosen = [int(a) for a in np.unique(actions)]
    handles = [Patch(color=colours(a / 9 if a <= 9 else 1.0), label=f"action {a + 1}") for a in chosen[:10]]
    handles.append(ax.scatter([], [], s=12, c="black", marker=".", label="rewarded"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def curves(lines: dict[str, np.ndarray], ylabel: str, path: Path) -> Path:
    """One line per player against the trial number."""
    with saved_figure(path, figsize=(6, 4)) as (_, ax):
        for name, y in lines.items():
            ax.plot(np.arange(1, len(y) + 1), y, label=name, lw=2.5 if name == "agent" else 1.2)
        ax.set(xlabel="trial", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    return path


def regret_figure(regrets: dict[str, np.ndarray], best: str | None, path: Path) -> Path:
    """regret.png. Left: each player's mean cumulative regret by trial (regrets: name -> [T, N] per
    trial and episode), on an axis set by the players near the agent (random play runs off it, and
    says where it ends). Right, where the task has a best player (`best`): the agent's cumulative
    regret above it on the same episodes, with a band of one standard error: the point of the figure."""
    cumulative = {name: r.cumsum(0) for name, r in regrets.items()}
    means = {name: c.mean(1) for name, c in cumulative.items()}
    shown = [m[-1] for name, m in means.items() if name != "random"]
    top = 1.25 * max(shown) if shown else None
    panels = 2 if best in regrets else 1
    with saved_figure(path, figsize=(6 * panels, 4), ncols=panels, squeeze=False) as (_, axes):
        ax = axes[0][0]
        trials = np.arange(1, len(next(iter(means.values()))) + 1)
        for name, m in means.items():
            label = name if top is None or m[-1] <= top else f"{name} (off the axis: {m[-1]:.1f} at the end)"
            ax.plot(trials, m, label=label, lw=2.5 if name == "agent" else 1.2)
        ax.set(xlabel="trial", ylabel="mean cumulative expected regret", ylim=(0, top) if top else None)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        if panels == 2:
            gap = cumulative["agent"] - cumulative[best]  # [T, N]: paired, episode by episode
            mean, sem = gap.mean(1), gap.std(1, ddof=1) / np.sqrt(gap.shape[1])
            right = axes[0][1]
            right.fill_between(trials, mean - sem, mean + sem, alpha=0.3, label="± one standard error")
            right.plot(trials, mean, lw=2.5, label=f"agent - {best}")
            right.axhline(0.0, color="black", lw=0.8)
            share = 100 * mean[-1] / means[best][-1] if means[best][-1] > 0 else float("nan")
            title = (
                f"{mean[-1]:+.3f} ± {sem[-1]:.3f} at the end ({share:+.1f}%), same {gap.shape[1]} episodes"
            )
            right.set(xlabel="trial", ylabel=f"cumulative regret above {best}", title=title)
            right.grid(alpha=0.3)
            right.legend(fontsize=8, loc="upper left")
    return path


def sorted_raster(
    actions: np.ndarray, rewards: np.ndarray, key: np.ndarray | None, label: str, path: Path
) -> Path:
    """The episode raster with rows sorted by a per-episode figure of the task's (key [N], read as
    `label`; unsorted when None), at most 300 rows taken evenly across the sorted episodes.
    actions, rewards: [T, N]."""
    episodes = actions.shape[1]
    order = np.argsort(key, kind="stable") if key is not None else np.arange(episodes)
    rows = order[np.linspace(0, episodes - 1, min(300, episodes)).round().astype(int)]
    title = f"{len(rows)} of {episodes} episodes" + (f", sorted by {label}" if key is not None else "")
    with saved_figure(path, figsize=(8, 7)) as (_, ax):
        _draw_raster(ax, actions[:, rows], rewards[:, rows], title)
    return path


PEEK_FILE = "PEEK"  # create it in a running job's run_dir for a picture of the next batch


def save_peek(run_dir: Path, batch, update: int, say) -> None:
    """Picture rank 0's share of this batch, then remove the PEEK file that asked for it."""
    path = run_dir / f"peek-{update:08d}.png"
    episode_raster(
        batch.actions.numpy(),
        batch.rewards.numpy(),
        path,
        title=f"update {update}: {batch.actions.shape[1]} episodes of rank 0 (colour: action; dot: rewarded)",
    )
    (run_dir / PEEK_FILE).unlink(missing_ok=True)
    say(f"dist_vpg: peek saved to {path}")
