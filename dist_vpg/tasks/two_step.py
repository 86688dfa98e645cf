"""The two-step task (Daw et al. 2011; Wang et al. 2018), one agent step per trial."""

from __future__ import annotations

from typing import NamedTuple

import torch

from dist_vpg.tasks.base import StartsBlank, Step


class TwoStepState(NamedTuple):
    good: torch.Tensor  # [B] long: which second-stage state (0 or 1) pays reward_high now
    common: torch.Tensor  # [B] bool: whether the last transition was the common one


class TwoStep(StartsBlank):
    """The two-step task of Daw et al. (2011) as used by Wang et al. (2018), one step per trial.

    The first-stage action a leads to second-stage state a with probability common_prob (else to
    1 - a), which pays a reward with probability reward_high if it is the good state, reward_low
    otherwise. After each trial the good state swaps with probability swap_prob. The agent sees the
    second-stage state it reached as the observation of the next trial.
    """

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
