"""The two-step task (Daw et al. 2011; Wang et al. 2018), one agent step per trial.

Players: the Bayes-optimal one, where it is known (`bayes`). Report: the stay probabilities after
each kind of trial and the model-based index (`stay`), drawn as stay.png beside the paper's.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from dist_vpg.native import abi
from dist_vpg.results import EvalResult, Player
from dist_vpg.settings import TaskSettings, probability, setting
from dist_vpg.tasks.base import Step, TaskUnit
from dist_vpg.tasks.two_step import bayes, stay


@dataclass(frozen=True)
class TwoStepSettings(TaskSettings):
    name: str = "two_step"
    trials: int = 100
    common_prob: float = setting(0.8, "P(the first-stage action leads to its own second-stage state)")
    reward_high: float = setting(0.9, "P(reward) in the good second-stage state")
    reward_low: float = setting(0.1, "P(reward) in the other second-stage state")
    swap_prob: float = setting(0.025, "P(the good state swaps) after each trial")

    def check(self) -> None:
        super().check()
        probability(self, "common_prob", "reward_high", "reward_low", "swap_prob")


class TwoStepState(NamedTuple):
    good: torch.Tensor  # [B] long: which second-stage state (0 or 1) pays reward_high now
    common: torch.Tensor  # [B] bool: whether the last transition was the common one


class TwoStep(TaskUnit):
    """The two-step task of Daw et al. (2011) as used by Wang et al. (2018), one step per trial.

    The first-stage action a leads to second-stage state a with probability common_prob (else to
    1 - a), which pays a reward with probability reward_high if it is the good state, reward_low
    otherwise. After each trial the good state swaps with probability swap_prob. The agent sees the
    second-stage state it reached as the observation of the next trial.
    """

    Settings = TwoStepSettings
    pretrained = "two_step.pt"
    gym_ids = {"dist_vpg/TwoStep-v0": {}}

    obs_size = 2
    max_reward = 1.0
    num_actions = 2
    episode_draws = 1
    trial_draws = 3  # transition, reward, swap

    def __init__(
        self,
        trials: int = 100,
        common_prob: float = 0.8,
        reward_high: float = 0.9,
        reward_low: float = 0.1,
        swap_prob: float = 0.025,
    ):
        self.trials = trials
        self.common_prob = common_prob
        self.reward_high = reward_high
        self.reward_low = reward_low
        self.swap_prob = swap_prob

    def reset(self, u: torch.Tensor) -> TwoStepState:
        good = (u[:, 0] < 0.5).long()
        return TwoStepState(good=good, common=torch.ones_like(good, dtype=torch.bool))

    def expected_reward(self, state: TwoStepState) -> torch.Tensor:
        """[B, 2] expected reward of each first-stage action before its transition is drawn."""
        good_first = (state.good == 0).float()  # action 0 leads commonly to state 0
        p_state0 = good_first * self.reward_high + (1 - good_first) * self.reward_low
        p_state1 = self.reward_high + self.reward_low - p_state0
        c = self.common_prob
        return torch.stack([c * p_state0 + (1 - c) * p_state1, c * p_state1 + (1 - c) * p_state0], 1)

    def step(self, state: TwoStepState, action: torch.Tensor, u: torch.Tensor) -> Step:
        values = self.expected_reward(state)  # [B, 2]
        regret = values.max(dim=1).values - values.gather(1, action.unsqueeze(1)).squeeze(1)
        common = u[:, 0] < self.common_prob
        reached = torch.where(common, action, 1 - action)
        p = torch.where(reached == state.good, self.reward_high, self.reward_low)
        reward = (u[:, 1] < p).float()
        good = torch.where(u[:, 2] < self.swap_prob, 1 - state.good, state.good)
        obs = torch.nn.functional.one_hot(reached, 2).float()
        return Step(TwoStepState(good, common), obs, reward, regret)

    native_step = abi.NativeStep(__file__, "step.c")

    def native_state(self, state: TwoStepState, keep: list) -> ctypes.Structure:
        constants = (self.common_prob, self.reward_high, self.reward_low, self.swap_prob)
        return self.native_step.State(*constants, abi.longs(state.good, keep))

    # --- evaluation ---

    best_player = "bayes_optimal"
    best_is_optimal = True

    def players(self, objective=None) -> dict[str, Player]:
        return {"bayes_optimal": bayes.player(self)} if bayes.TwoStepBayes.applies(self) else {}

    def agent_record(self, inputs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        # the state reached on trial t is trial t + 1's observation
        reached = inputs[1:, :, : self.obs_size].argmax(-1)
        return {"common": reached == actions[:-1]}

    def beliefs(self, state, inputs, actions, rewards) -> dict[str, torch.Tensor]:
        """The posterior that each second-stage state is the good one, before each choice."""
        update = bayes.TwoStepBayes(self).update
        reached = inputs[1:, :, : self.obs_size].argmax(-1)  # trial t's state is trial t + 1's input
        belief, found = torch.full((inputs.shape[1],), 0.5, dtype=torch.float64), []
        for t in range(inputs.shape[0]):
            found.append(belief)
            if t + 1 < inputs.shape[0]:
                belief = update(belief, reached[t], rewards[t])
        p = torch.stack(found)
        return {"good_state": torch.stack([p, 1 - p], -1)}

    def report(self, results: dict[str, EvalResult], seed, split, objective) -> dict:
        agent = results["agent"]
        found = {
            "stay_probabilities": stay.stay_probabilities(
                agent.actions, agent.rewards, agent.extra["common"]
            ),
            "paper_stay_probabilities": stay.PAPER,
            "model_based_index": stay.model_based_index(agent.actions, agent.rewards, agent.extra["common"]),
        }
        others = {
            name: {"stay_probabilities": stay.stay_probabilities(r.actions, r.rewards, r.extra["common"])}
            for name, r in results.items()
            if name != "agent" and "common" in r.extra
        }
        return found | ({"baselines": others} if others else {})

    def figures(self, metrics: dict, results: dict[str, EvalResult], out: Path) -> None:
        patterns = {"agent (95% CI)": metrics["stay_probabilities"]}
        for name, m in metrics.get("baselines", {}).items():
            if "stay_probabilities" in m:
                patterns[name.replace("_", "-")] = m["stay_probabilities"]
        stay.stay_bars(patterns, metrics["paper_stay_probabilities"], out / "stay.png")

    # --- play ---

    def describe(self, step: Step) -> str:
        reached = int(step.obs[0].argmax())
        kind = "common" if bool(step.state.common) else "rare"
        return f"you reached state {'AB'[reached]} ({kind}), reward {step.reward.item():g}"

    def rules(self) -> str:
        return (
            "Each choice leads to state A or B, one of them far more often than the other; one "
            "state pays more often, and which one changes now and then."
        )

    def reveal(self, states, last) -> str:
        return "Choice 1 leads mostly to A, choice 2 mostly to B; the paying state swapped now and then.\n"
