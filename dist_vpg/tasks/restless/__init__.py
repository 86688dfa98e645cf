"""Restless bandits (Wang et al. 2016, section 3.1.4): two arms whose payout drifts, slowly in some
episodes and fast in others.

Arm 0 pays 1 with probability p and arm 1 with probability 1 - p. After every trial p takes a
Gaussian step, reflected back into [0, 1] at its ends; the step's standard deviation is `drift_low`
in stable episodes and `drift_high` in volatile ones, drawn anew each episode (volatile with
probability `volatile_share`) and never shown to the agent. p starts uniform on [0, 1].

What a learner should do: track p with a memory as long as the drift allows, so a learning rate low
in stable episodes and high in volatile ones, which it must infer from the outcomes themselves.
Whichever arm is pulled, its outcome tells as much about p (a 1 from arm 1 is a 0 from arm 0), so no
choice is worth making for what it reveals: the Bayes-optimal player is greedy on the exact
posterior over (p, volatility) (`players`, which also holds the Rescorla-Wagner players and the fit
of a learner's learning rate that the report draws as learning_rates.png).

The defaults, chosen here (the paper gives none): drift 0.02 a trial when stable (p wanders about
0.2 over 100 trials: nearly a stationary bandit) and 0.2 when volatile (about 0.45 in 5 trials: old
outcomes soon mislead). With them the best Rescorla-Wagner learning rates are 0.027 and 0.37, and
the Bayes-optimal player's choices fit learning rates of about 0.1 and 0.3 (docs/tasks/restless.md).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dist_vpg.native import abi
from dist_vpg.noise import Noise
from dist_vpg.plots import saved_figure
from dist_vpg.results import EvalResult, Played, Player
from dist_vpg.settings import TaskSettings, require, setting
from dist_vpg.tasks.base import Step, TaskUnit
from dist_vpg.tasks.restless import players


@dataclass(frozen=True)
class RestlessSettings(TaskSettings):
    name: str = "restless"
    trials: int = 100
    drift_low: float = setting(0.02, "s.d. of p's step after each trial of a stable episode")
    drift_high: float = setting(0.2, "s.d. of p's step after each trial of a volatile episode")
    volatile_share: float = setting(0.5, "P(an episode is volatile)")

    def check(self) -> None:
        super().check()
        for key in ("drift_low", "drift_high", "volatile_share"):
            require(0.0 <= getattr(self, key) <= 1.0, f"task.{key}", "must lie in [0, 1]")


# Uniforms are float32 multiples of 2**-24 in [0, 1): kept this far from 0 and 1, the normal
# quantile of every one of them is finite.
_U_EDGE = 2.0**-25


class RestlessState(NamedTuple):
    p: torch.Tensor  # [B] arm 0's payout probability this trial (arm 1's is 1 - p)
    drift: torch.Tensor  # [B] the standard deviation of p's step after each trial
    volatile: torch.Tensor  # [B] bool: drift is drift_high


def reflect(p: torch.Tensor) -> torch.Tensor:
    """p folded back into [0, 1] at both ends, as often as it overshoots (a triangle wave); values
    inside are kept exactly."""
    folded = 1.0 - (torch.remainder(p, 2.0) - 1.0).abs()
    return torch.where((p >= 0.0) & (p <= 1.0), p, folded)


class RestlessBandit(TaskUnit):
    Settings = RestlessSettings
    pretrained = "restless.pt"
    action_word = "arm"
    gym_ids = {"dist_vpg/RestlessBandit-v0": {}}

    obs_size = 0
    num_actions = 2
    episode_draws = 2  # p's start, and whether the episode is volatile
    trial_draws = 2  # the reward, and p's step
    max_reward = 1.0

    def __init__(
        self, trials: int = 100, drift_low: float = 0.02, drift_high: float = 0.2, volatile_share: float = 0.5
    ):
        self.trials = trials
        self.drift_low, self.drift_high, self.volatile_share = drift_low, drift_high, volatile_share

    def reset(self, u: torch.Tensor) -> RestlessState:
        volatile = u[:, 1] < self.volatile_share
        drift = torch.where(volatile, self.drift_high, self.drift_low)
        return RestlessState(u[:, 0].clone(), drift, volatile)

    def step(self, state: RestlessState, action: torch.Tensor, u: torch.Tensor) -> Step:
        p = state.p
        chosen = torch.where(action == 0, p, 1.0 - p)
        reward = (u[:, 0] < chosen).float()
        regret = torch.maximum(p, 1.0 - p) - chosen
        z = torch.special.ndtri(u[:, 1].clamp(_U_EDGE, 1.0 - _U_EDGE))
        p = reflect(p + state.drift * z)
        return Step(state._replace(p=p), torch.zeros(len(action), 0), reward, regret)

    native_step = abi.NativeStep(__file__, "step.c")

    def native_state(self, state: RestlessState, keep: list) -> ctypes.Structure:
        return self.native_step.State(abi.floats(state.p, keep), abi.floats(state.drift, keep))

    def native_noise(self, trial: torch.Tensor) -> torch.Tensor:
        """[T, B, 2]: the reward's uniform, and the normal quantile of the step's, as `step` takes it."""
        z = torch.special.ndtri(trial[..., 1].clamp(_U_EDGE, 1.0 - _U_EDGE))
        return torch.stack([trial[..., 0], z], -1)

    # --- evaluation ---

    best_player = "optimal"
    best_is_optimal = True

    def best(self) -> Player:
        return _played(players.player(self, "optimal"))

    def players(self, objective=None) -> dict[str, Player]:
        return {name: _played(players.player(self, name)) for name in players.PLAYERS}

    def report(self, results: dict[str, EvalResult], seed: int, split: int, objective) -> dict:
        """Each player's regret in stable and volatile episodes, and the Rescorla-Wagner learning
        rates fitted to its choices per block of episodes (not the random player's: its choices
        follow no q)."""
        volatile = players.volatile_episodes(self, next(iter(results.values())).episodes, seed, split)
        return {
            "regret_by_volatility": {
                name: {"low": float(r.regret[~volatile].mean()), "high": float(r.regret[volatile].mean())}
                for name, r in results.items()
            },
            "learning_rates": {
                name: players.learning_rates(r.actions, r.rewards, volatile)
                for name, r in results.items()
                if name != "random"
            },
            "rw_player_alphas": players.tuned_alphas(self),
        }

    def figures(self, metrics: dict, results: dict[str, EvalResult], out: Path) -> None:
        learning_rates(metrics["learning_rates"], out / "learning_rates.png")

    # --- play ---

    def rules(self) -> str:
        return (
            "Arm 1 pays 1 with a hidden chance p that drifts from trial to trial (slowly in some "
            "episodes, fast in others), arm 2 with 1 - p."
        )

    def reveal(self, states, last) -> str:
        kind = "a volatile" if bool(last.volatile[0]) else "a stable"
        path = " ".join(f"{float(s.p[0]):.2f}" for s in states)
        return (
            f"Revealed: {kind} episode (p stepped by s.d. {float(last.drift[0]):g} a trial). Arm 1 paid "
            f"with p, arm 2 with 1 - p; p on your trials: {path}.\n"
        )


def _played(play) -> Player:
    def chunk(draws: Noise, _: int) -> Played:
        regrets, rewards, actions = play(draws)
        return Played(regrets, rewards, actions.to(torch.int8), {})

    return chunk


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
