"""What a player's episodes leave behind, defined below the tasks so that a task's players, reports
and figures (dist_vpg.tasks) and the evaluation that asks for them (dist_vpg.evaluate) share it.

A player is a function `(noise, chunk_seed) -> Played` that plays the B episodes of `noise`, the
agent's own episodes, and makes its own choices from the chunk seed where it draws any.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from dist_vpg.noise import Noise


class Played(NamedTuple):
    regrets: torch.Tensor  # [T, b] expected regret of each choice
    rewards: torch.Tensor  # [T, b]
    actions: torch.Tensor  # [T, b]
    # what else the task records of these episodes, each with the episodes on its last axis (the
    # two-step task: "common" [T - 1, b], whether trial t's transition was the common one)
    extra: dict[str, torch.Tensor] = {}


Player = Callable[[Noise, int], Played]


def played(regrets: list, rewards: list, actions: list, **extra: torch.Tensor) -> Played:
    """A Played from per-trial lists of [b] tensors; actions stored as int8."""
    actions = torch.stack([torch.as_tensor(a) for a in actions]).to(torch.int8)
    return Played(torch.stack(regrets), torch.stack(rewards), actions, extra)


class EvalResult(NamedTuple):
    regrets: np.ndarray  # [T, N]
    rewards: np.ndarray  # [T, N]
    actions: np.ndarray  # [T, N]
    # Played.extra and the task's per-episode records (dist_vpg.tasks.base.TaskUnit.episode_record),
    # each with the N episodes on its last axis
    extra: dict[str, np.ndarray] = {}

    @property
    def episodes(self) -> int:
        return self.regrets.shape[1]

    @property
    def regret(self) -> np.ndarray:
        """[N] expected regret summed over each episode."""
        return self.regrets.sum(0)

    @property
    def regret_by_trial(self) -> np.ndarray:
        """[T] mean cumulative expected regret after each trial."""
        return self.regrets.cumsum(0).mean(1)

    def at_steps(self, steps: list[int]) -> EvalResult:
        """The same episodes at these agent steps alone (a task's choices, where some steps are
        not): regrets, rewards and actions; the per-episode records kept whole."""
        return EvalResult(self.regrets[steps], self.rewards[steps], self.actions[steps], self.extra)

    def by_trial(self) -> dict[str, np.ndarray]:
        """Per-trial curves: cumulative regret, P(best choice), reward."""
        return {
            "regret": self.regret_by_trial,
            "p_best": (self.regrets <= 1e-9).mean(1),
            "reward": self.rewards.mean(1),
        }

    def metrics(self) -> dict:
        n, reward = self.episodes, self.rewards.sum(0)
        sem = (lambda x: float(x.std(ddof=1) / np.sqrt(n))) if n > 1 else (lambda x: float("nan"))
        return {
            "episodes": n,
            "regret_at_end": float(self.regret.mean()),
            "regret_sem": sem(self.regret),
            "regret_std": float(self.regret.std(ddof=1)) if n > 1 else float("nan"),
            "reward_per_episode": float(reward.mean()),
            "reward_sem": sem(reward),
            "p_best_last_trial": float(self.by_trial()["p_best"][-1]),
        }


def sem(x: np.ndarray) -> float:
    """The standard error of x's mean (NaN for fewer than two values)."""
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def paired_gap(regret: np.ndarray, best: np.ndarray) -> dict[str, float]:
    """A player's regret [N] against the best player's on the same N episodes: the best's mean, and
    the mean and standard error of the per-episode differences."""
    diff = regret - best
    return {"optimum": float(best.mean()), "gap": float(diff.mean()), "gap_sem": sem(diff)}
