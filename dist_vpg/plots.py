"""Pictures of episodes, drawn with matplotlib's Agg backend (no display needed): the figures every
task shares. A task's own figures live with the task (dist_vpg.tasks), drawn with `saved_figure`."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass
class RasterView:
    """What raster.png shows of each trial of each episode: a colour, named by `labels[code]`, and a
    dot where `dots` is true (None: no dots). codes, dots: [T, N]."""

    codes: np.ndarray
    labels: list[str]
    dots: np.ndarray | None
    dot_label: str = "rewarded"

    @classmethod
    def of_actions(cls, actions: np.ndarray, rewards: np.ndarray, word: str = "action") -> RasterView:
        """The chosen action's colour, named `word` 1, 2, ...; a dot where the trial paid."""
        actions = np.asarray(actions)
        count = int(actions.max()) + 1 if actions.size else 1
        return cls(actions, [f"{word} {a + 1}" for a in range(count)], np.asarray(rewards) > 0)


def episode_raster(actions: np.ndarray, rewards: np.ndarray, path: Path, title: str = "") -> Path:
    """One row per episode, one cell per trial: colour = chosen action, dot = rewarded.

    actions, rewards: [T, B].
    """
    view = RasterView.of_actions(actions, rewards)
    trials, episodes = view.codes.shape
    with saved_figure(path, figsize=(8.5, max(2.5, min(12, 0.12 * episodes + 1)))) as (_, ax):
        _draw_raster(ax, view, title or f"{episodes} episodes, {trials} trials")
    return path


def _draw_raster(ax, view: RasterView, title: str) -> None:
    """Episodes as rows, trials as columns counted from 1 as play and regret.png count them, each
    cell in its code's colour (a legend beside the axes names the colours shown), a dot where
    view.dots says."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colours = palette(len(view.labels))
    trials, episodes = view.codes.shape
    extent = (0.5, trials + 0.5, episodes - 0.5, -0.5)
    # one colour a code: code k spans [k - 0.5, k + 0.5]
    shown = {"cmap": ListedColormap(colours), "vmin": -0.5, "vmax": len(colours) - 0.5}
    ax.imshow(view.codes.T, aspect="auto", interpolation="nearest", extent=extent, **shown)
    handles = [Patch(color=colours[k], label=view.labels[k]) for k in np.unique(view.codes).astype(int)]
    if view.dots is not None:
        ep, tr = np.nonzero(view.dots.T)
        ax.scatter(tr + 1, ep, s=2, c="black", marker=".", linewidths=0)
        handles.append(ax.scatter([], [], s=12, c="black", marker=".", label=view.dot_label))
    ax.set(xlabel="trial", ylabel="episode", title=title)
    _trial_axis(ax)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def palette(count: int) -> list[tuple[float, float, float]]:
    """`count` colours, distinct up to 20 (matplotlib's tab10, or tab20 beyond ten)."""
    import matplotlib

    colours = matplotlib.colormaps["tab10" if count <= 10 else "tab20"].colors
    return [colours[k % len(colours)] for k in range(count)]


def curves(lines: dict[str, np.ndarray], ylabel: str, path: Path) -> Path:
    """One line per player against the trial number, the legend beside the axes, off the curves."""
    with saved_figure(path, figsize=(7.5, 4)) as (_, ax):
        for name, y in lines.items():
            ax.plot(np.arange(1, len(y) + 1), y, label=name, lw=2.5 if name == "agent" else 1.2)
        ax.set(xlabel="trial", ylabel=ylabel)
        _trial_axis(ax)
        ax.grid(alpha=0.3)
        _legend_beside(ax)
    return path


def gap_by_trial(regrets: dict[str, np.ndarray], best: str) -> tuple[np.ndarray, np.ndarray]:
    """The agent's cumulative regret above `best` by trial, taken episode by episode on the same
    episodes (regrets: name -> [T, N]): its mean and standard error, each [T]."""
    gap = regrets["agent"].cumsum(0) - regrets[best].cumsum(0)
    return gap.mean(1), gap.std(1, ddof=1) / np.sqrt(gap.shape[1])


def regret_figure(regrets: dict[str, np.ndarray], best: str | None, path: Path) -> Path:
    """regret.png (regrets: name -> [T, N], per trial and episode). First, where the task has a best
    player (`best`), the point of the figure: the agent's cumulative regret above it on the same
    episodes by trial, with a band of one standard error, its figure at the last trial in the title.
    Then each player's mean cumulative regret by trial, on an axis set by the players near the agent
    (random play runs off it, and its label says where it ends)."""
    means = {name: r.cumsum(0).mean(1) for name, r in regrets.items()}
    trials = np.arange(1, len(next(iter(means.values()))) + 1)
    panels = 2 if best in regrets and "agent" in regrets else 1
    with saved_figure(path, figsize=(6.5 * panels, 4.2), ncols=panels, squeeze=False) as (_, axes):
        if panels == 2:
            mean, sem = gap_by_trial(regrets, best)
            _gap_panel(axes[0][0], trials, mean, sem, best, means[best][-1], regrets[best].shape[1])
        _players_panel(axes[0][-1], trials, means)
    return path


def _gap_panel(ax, trials, mean, sem, best: str, best_total: float, episodes: int) -> None:
    share = f" ({100 * mean[-1] / best_total:+.1f}%)" if best_total > 0 else ""
    ax.fill_between(trials, mean - sem, mean + sem, alpha=0.3, label="± one standard error")
    ax.plot(trials, mean, lw=2.5, label=f"agent - {best}, episode by episode")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set(
        xlabel="trial",
        ylabel=f"cumulative regret above {best}",
        title=f"agent above {best}: {mean[-1]:+.3f} ± {sem[-1]:.3f}{share}\nat trial {trials[-1]}, "
        f"on the same {episodes} episodes",
    )
    ax.title.set_fontsize(10)
    _trial_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def _players_panel(ax, trials, means: dict[str, np.ndarray]) -> None:
    shown = [m[-1] for name, m in means.items() if name != "random"]
    top = 1.25 * max(shown) if shown and max(shown) > 0 else None
    for name, m in means.items():
        label = name if top is None or m[-1] <= top else f"{name} (off the axis: {m[-1]:.1f} at the end)"
        ax.plot(trials, m, label=label, lw=2.5 if name == "agent" else 1.2)
    ax.set(xlabel="trial", ylabel="mean cumulative expected regret", ylim=(0, top) if top else None)
    ax.set_title("every player", fontsize=10)
    _trial_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def _trial_axis(ax) -> None:
    """Trials are whole numbers: no tick at 1.5."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))


def _legend_beside(ax) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def sorted_raster(view: RasterView, key: np.ndarray | None, label: str, path: Path) -> Path:
    """The episode raster with rows sorted by a per-episode figure of the task's (key [N], read as
    `label`; unsorted when None), at most 300 rows taken evenly across the sorted episodes."""
    episodes = view.codes.shape[1]
    order = np.argsort(key, kind="stable") if key is not None else np.arange(episodes)
    rows = order[np.linspace(0, episodes - 1, min(300, episodes)).round().astype(int)]
    title = f"{len(rows)} of {episodes} episodes" + (f", sorted by {label}" if key is not None else "")
    with saved_figure(path, figsize=(8.5, 7)) as (_, ax):
        dots = view.dots[:, rows] if view.dots is not None else None
        _draw_raster(ax, RasterView(view.codes[:, rows], view.labels, dots, view.dot_label), title)
    return path


PEEK_FILE = "PEEK"  # create it in a running job's run_dir for a picture of the next batch


def save_peek(run_dir: Path, batch, update: int, say) -> None:
    """Picture rank 0's share of this batch, then remove the PEEK file that asked for it."""
    path = run_dir / f"peek-{update:08d}.png"
    episode_raster(
        batch.actions.numpy(),
        batch.rewards.numpy(),
        path,
        title=f"update {update}: {batch.actions.shape[1]} episodes of rank 0",
    )
    (run_dir / PEEK_FILE).unlink(missing_ok=True)
    say(f"dist_vpg: peek saved to {path}")
