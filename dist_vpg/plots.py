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


def curves(lines: dict[str, np.ndarray], ylabel: str, path: Path) -> Path:
    """One line per player against the trial number."""
    with saved_figure(path, figsize=(6, 4)) as (_, ax):
        for name, y in lines.items():
            ax.plot(np.arange(1, len(y) + 1), y, label=name, lw=2.5 if name == "agent" else 1.2)
        ax.set(xlabel="trial", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    return path


def sorted_raster(actions: np.ndarray, rewards: np.ndarray, gap: np.ndarray | None, path: Path) -> Path:
    """The episode raster with rows sorted by the arms' probability gap (bandits), at most 300 rows
    taken evenly across the sorted episodes. actions, rewards: [T, N]; gap: [N] or None."""
    episodes = actions.shape[1]
    order = np.argsort(gap, kind="stable") if gap is not None else np.arange(episodes)
    rows = order[np.linspace(0, episodes - 1, min(300, episodes)).round().astype(int)]
    title = f"{len(rows)} of {episodes} episodes" + (
        ", sorted by p0 - p1 (top: arm 1 better)" if gap is not None else ""
    )
    with saved_figure(path, figsize=(8, 7)) as (_, ax):
        _draw_raster(ax, actions[:, rows], rewards[:, rows], title + "\ncolour: chosen action; dot: rewarded")
    return path


def pull_pattern(pulls: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """Informative arms: by trial, each player's share of pulls of the informative arm (left) and
    of the target (right). pulls: {player: {"informative": [T], "target": [T]}}."""
    with saved_figure(path, ncols=2, figsize=(10, 4)) as (_, axes):
        for ax, kind in zip(axes, ("informative", "target")):
            for name, p in pulls.items():
                trials = np.arange(1, len(p[kind]) + 1)
                ax.plot(trials, p[kind], marker="o", lw=2.5 if name == "agent" else 1.2, label=name)
            ax.set(xlabel="trial", ylabel=f"P(pulls the {kind} arm)", ylim=(-0.02, 1.02), xticks=trials)
            ax.grid(alpha=0.3)
        axes[0].legend()
    return path


def learning_rates(fits: dict[str, dict], path: Path) -> Path:
    """Restless bandits: each player's Rescorla-Wagner learning rate in stable and volatile
    episodes, one dot per block of episodes and a bar at their mean (dist_vpg.restless)."""
    kinds = (("low", "stable"), ("high", "volatile"))
    x = np.arange(len(fits))
    with saved_figure(path, figsize=(max(6, 1.3 * len(fits)), 4)) as (_, ax):
        for k, (kind, label) in enumerate(kinds):
            where = x + (k - 0.5) * 0.38
            ax.bar(where, [f[kind]["mean"] for f in fits.values()], 0.36, alpha=0.5, label=label)
            for w, f in zip(where, fits.values()):
                ax.scatter(np.full(len(f[kind]["alpha"]), w), f[kind]["alpha"], s=8, c="black", zorder=3)
        ax.set_xticks(x, [name.replace("_", "\n") for name in fits])
        ax.set(ylabel="fitted learning rate (one dot per block)", yscale="log")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(title="episodes")
    return path


def harlow_sides(found: dict[str, dict[str, list]], path: Path) -> Path:
    """Harlow: by trial, each player's chance of choosing the rewarded object, when it stands on the
    side it stood on in trial 1 (left) and when it has swapped sides (right)."""
    panels = (
        ("same_side", "rewarded object on trial 1's side"),
        ("swapped", "rewarded object swapped sides"),
    )
    with saved_figure(path, ncols=2, figsize=(10, 4)) as (_, axes):
        for ax, (kind, title) in zip(axes, panels):
            for name, p in found.items():
                y = np.array([np.nan if v is None else v for v in p[kind]], dtype=float)
                trials = np.arange(1, len(y) + 1)
                # the agent drawn over the optimal player (dashed), whose line it may cover
                agent = name == "agent"
                style = (
                    {"lw": 2.5, "zorder": 3}
                    if agent
                    else {"lw": 1.2, "ls": "--" if name == "optimal" else "-"}
                )
                ax.plot(trials, y, marker="o", label=name.replace("_", " "), **style)
            ax.set(xlabel="trial", ylabel="P(chooses the rewarded object)", ylim=(-0.02, 1.02), xticks=trials)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
        axes[0].legend()
    return path


def stay_bars(found: dict[str, dict], paper: dict, path: Path) -> Path:
    """Two-step stay probabilities by kind of previous trial, one bar group per kind: each player's
    (found: {label: {kind: {"p", "sem"}}}, with 95% error bars) and the paper's."""
    kinds = list(paper)
    x = np.arange(len(kinds))
    bars = len(found) + 1
    width = 0.8 / bars
    with saved_figure(path, figsize=(7, 4)) as (_, ax):
        for i, (label, pattern) in enumerate(found.items()):
            p = [pattern[k]["p"] for k in kinds]
            err = [1.96 * pattern[k]["sem"] for k in kinds]
            ax.bar(x + (i - (bars - 1) / 2) * width, p, width, yerr=err, capsize=3, label=label)
        ax.bar(
            x + (bars - 1) / 2 * width, [paper[k] for k in kinds], width, alpha=0.6, label="Wang et al. 2018"
        )
        ax.set_xticks(x, [k.replace("_", "\n") for k in kinds])
        ax.set(ylabel="P(same first-stage choice)", ylim=(0, 1.05))
        ax.legend(loc="upper center", fontsize=8)
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
