"""Dependent arms II (Wang et al. 2016, section 3.1.3): one arm tells where the treasure is.

Of `arms` arms, the first arms - 1 are ordinary: one of them, the target, drawn anew each episode,
pays 5 and the others 1. The last arm is informative: it pays scale * (target + 1) / (arms - 1),
0.1 times the target's 1-based index with 11 arms and scale 1 (the paper's task; a larger scale
makes the payout easier to read: the first stage of the task's curriculum). Payouts are deterministic.
Over 5 trials the best policy pulls the informative arm once, reads the target off its payout and
pulls the target 4 times: 5 * 4 + 0.1 * index, 20.55 on average with 11 arms, against 5 * 5 for an
oracle. A learner that never pulls the informative arm must search the ordinary arms one by one.
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
from dist_vpg.plots import RasterView, saved_figure
from dist_vpg.results import EvalResult, Played, Player, played
from dist_vpg.settings import TaskSettings, require, setting
from dist_vpg.tasks.base import Step, TaskUnit

TARGET_PAYS, OTHERS_PAY = 5.0, 1.0


@dataclass(frozen=True)
class InformativeSettings(TaskSettings):
    name: str = "informative_arms"
    trials: int = 5
    arms: int = setting(11, "the ordinary arms, then the informative one")
    # the informative arm pays informative_scale * (target + 1) / (arms - 1); 1 is the paper's task,
    # larger values make its payout easier to read (a curriculum's first stage)
    informative_scale: float = setting(
        1.0, "how much the informative arm's payout is magnified (1: the paper's)"
    )

    def check(self) -> None:
        super().check()
        require(
            self.arms >= 3,
            "task.arms",
            "informative_arms needs 2 ordinary arms and the informative one, at least 3 "
            f"(task.arms={self.arms})",
        )
        require(self.informative_scale > 0, "task.informative_scale", "must be > 0")


# `optimal` pulls the informative arm, then the target it points to. `thompson` and `ucb` know the
# prior (the target is one of the ordinary arms, each as likely) but not what the informative arm
# means: Thompson pulls an ordinary arm drawn from those not yet ruled out, UCB the first of them
# (every one of them may pay 5, more than any other arm's upper bound), so both search and never pull
# the informative arm. `random` pulls any arm.
PLAYERS = ("optimal", "thompson", "ucb", "random")


class InformativeState(NamedTuple):
    target: torch.Tensor  # [B] long: the ordinary arm that pays TARGET_PAYS
    payouts: torch.Tensor  # [B, arms] what each arm pays


INFORMATIVE_TRAIN = {
    "train.beta_e_final": 0.01,
    "train.gamma": 1.0,
    "train.gamma_final": -1.0,
    "train.average": 0.0,
}


class InformativeArms(TaskUnit):
    Settings = InformativeSettings
    pretrained = "informative_arms.pt"
    gym_ids = {"dist_vpg/InformativeArms-v0": {}}
    # From scratch, agents learn to search the ordinary arms and never read the informative one;
    # with its payout 5 times larger they read it within 2000 updates and keep reading it when it
    # shrinks to the paper's (docs/tasks/informative_arms.md). So task.name=informative_arms trains
    # at 5 times the payout first, with a large entropy bonus, then on the paper's task.
    curriculum = (
        {"set": {"task.informative_scale": 5.0, "train.beta_e": 0.3, **INFORMATIVE_TRAIN}, "share": 0.5},
        {"set": {"train.beta_e": 0.05, **INFORMATIVE_TRAIN}},
    )
    # the two-run recipe's length: at the default 16,000 updates the agent reads the informative
    # arm too coarsely to beat UCB; and the reward input 10 times what is paid, so that the
    # informative arm's steps of 0.1 are not lost beside the target's 5 (lower validation regret
    # on 5 seeds of 5, docs/learning.md)
    training = {"train.updates": 40000, "agent.reward_scale": 10.0}

    obs_size = 0
    episode_draws = 1  # the target
    trial_draws = 1  # unused: payouts are deterministic (kept so that every task draws per trial)

    def __init__(self, arms: int = 11, trials: int = 5, scale: float = 1.0):
        if arms < 3:
            raise ValueError(
                f"informative arms need at least 3 arms (2 ordinary and the informative one), not {arms}"
            )
        self.num_actions, self.trials = arms, trials
        self.ordinary, self.scale = arms - 1, scale
        self.max_reward = max(TARGET_PAYS, scale)

    def reset(self, u: torch.Tensor) -> InformativeState:
        target = (u[:, 0] * self.ordinary).long().clamp(max=self.ordinary - 1)
        payouts = torch.full((len(target), self.num_actions), OTHERS_PAY)
        payouts[torch.arange(len(target)), target] = TARGET_PAYS
        payouts[:, -1] = (target + 1).float() / self.ordinary * self.scale
        return InformativeState(target, payouts)

    def step(self, state: InformativeState, action: torch.Tensor, u: torch.Tensor) -> Step:
        reward = state.payouts.gather(1, action.unsqueeze(1)).squeeze(1)
        regret = TARGET_PAYS - reward
        return Step(state, torch.zeros(len(action), 0), reward, regret)

    native_step = abi.NativeStep(__file__, "informative.c")

    def native_state(self, state: InformativeState, keep: list) -> ctypes.Structure:
        """Payouts as a table: the chosen arm pays its entry, the target's TARGET_PAYS is the best."""
        best = torch.full((len(state.target),), TARGET_PAYS)
        payouts = abi.floats(state.payouts, keep)
        return self.native_step.State(state.payouts.shape[1], payouts, abi.floats(best, keep))

    @classmethod
    def from_settings(cls, settings: InformativeSettings) -> InformativeArms:
        return cls(settings.arms, settings.trials, settings.informative_scale)

    # --- evaluation ---

    best_player = "optimal"
    best_is_optimal = True

    def best(self) -> Player:
        return self.player("optimal")

    def players(self, objective=None) -> dict[str, Player]:
        return {name: self.player(name) for name in PLAYERS}

    def player(self, name: str) -> Player:
        """One of PLAYERS."""

        def play(draws: Noise, _: int) -> Played:
            state = self.reset(draws.episode)
            batch, ordinary = draws.action.shape[1], self.ordinary
            left = torch.ones(batch, ordinary, dtype=torch.bool)  # ordinary arms not yet ruled out
            found = torch.full((batch,), -1, dtype=torch.long)  # the target, once known
            regrets, rewards, actions = [], [], []
            for t in range(self.trials):
                u = draws.action[t]
                if name == "random":
                    action = (u * self.num_actions).long().clamp(max=self.num_actions - 1)
                elif name == "optimal" and t == 0:
                    action = torch.full((batch,), ordinary, dtype=torch.long)
                else:
                    if name == "thompson":  # the k-th arm still left, k uniform
                        k = (u * left.sum(1)).long()
                        pick = (left.cumsum(1) > k.unsqueeze(1)).float().argmax(1)
                    else:  # ucb: the first arm still left (optimal: only the target is)
                        pick = left.float().argmax(1)
                    action = torch.where(found >= 0, found, pick)
                step = self.step(state, action, draws.trial[t])
                if name == "optimal" and t == 0:  # the informative arm pays scale * (target + 1) / ordinary
                    found = (step.reward / self.scale * ordinary).round().long() - 1
                else:
                    ordinary_pull = action < ordinary
                    hit = ordinary_pull & (step.reward == TARGET_PAYS)
                    found = torch.where(hit, action, found)
                    rows = torch.arange(batch)[ordinary_pull]
                    left[rows, action[ordinary_pull]] = False
                regrets.append(step.regret)
                rewards.append(step.reward)
                actions.append(action)
            return played(regrets, rewards, actions)

        return play

    def pulls(self, result: EvalResult) -> dict[str, list[float]]:
        """By trial: the share of episodes that pulled the informative arm, and the target."""
        return {
            "informative": (result.actions == self.ordinary).mean(1).tolist(),
            "target": result.by_trial()["p_best"].tolist(),  # the target is the best choice
        }

    def report(self, results: dict[str, EvalResult], seed, split, objective) -> dict:
        return {"pull_pattern": {name: self.pulls(r) for name, r in results.items()}}

    def figures(self, metrics: dict, results: dict[str, EvalResult], out: Path) -> None:
        pull_pattern(metrics["pull_pattern"], out / "pulls.png")

    def raster_view(self, agent: EvalResult) -> RasterView:
        """Each pull as what it was to the episode: the informative arm, the target, another arm."""
        kind = np.where(agent.actions == self.ordinary, 2, np.where(agent.regrets <= 1e-9, 0, 1))
        labels = [
            f"the target (pays {TARGET_PAYS:g})",
            f"another ordinary arm (pays {OTHERS_PAY:g})",
            f"arm {self.num_actions}: the informative arm",
        ]
        return RasterView(kind, labels, None)

    # --- play ---

    def rules(self) -> str:
        ordinary = self.ordinary
        return (
            f"Of arms 1-{ordinary} one pays {TARGET_PAYS:g} and the others {OTHERS_PAY:g}; arm "
            f"{self.num_actions} pays little, but what it pays says which arm pays {TARGET_PAYS:g}."
        )

    def reveal(self, states, last) -> str:
        target = int(states[0].target[0])
        return (
            f"Revealed: arm {target + 1} paid {TARGET_PAYS:g}, the other ordinary arms 1, and arm "
            f"{self.num_actions} told where the {TARGET_PAYS:g} was: it paid "
            f"{self.scale * (target + 1) / self.ordinary:g}, {self.scale:g}/{self.ordinary} of the "
            "target's number.\n"
        )


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
