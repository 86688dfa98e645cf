"""Harlow's learning-to-learn task with abstract objects (Wang et al. 2018, section 3.2.2, without
pixels): learn within one trial which of two new objects pays, and then choose it on either side.

Every episode draws two objects from a pool of `objects` (each a fixed random vector of `features`
numbers in [0, 1], the same pool for every run) and pays 1 for choosing the first of them, 0 for
the other. On every trial, the first included, the agent sees both objects, left then right, and
chooses a side (action 0: left, 1: right); which object stands on which side is drawn anew each
trial. The rewarded object is a fresh draw each episode, so no object is worth anything in itself:
what pays is remembering which one paid in this episode. The best policy guesses on trial 1 (0.5)
and is right from then on: 0.5 expected regret an episode, against T / 2 for a guess every trial or
for a choice by side.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dist_vpg.tasks.base import Step

POOL_SEED = 20_180_514  # the pool of objects is part of the task: one fixed draw, never the noise


class HarlowState(NamedTuple):
    rewarded: torch.Tensor  # [B, features] the object that pays
    other: torch.Tensor  # [B, features] the object that does not
    left: torch.Tensor  # [B] bool: the rewarded object stands on the left this trial


class Harlow:
    num_actions = 2  # left, right
    episode_draws = 3  # the two objects, and the first trial's sides
    trial_draws = 1  # the next trial's sides
    max_reward = 1.0

    def __init__(self, trials: int = 6, objects: int = 1000, features: int = 8):
        if objects < 2:
            raise ValueError(f"Harlow needs a pool of at least 2 objects, not {objects}")
        self.trials, self.objects, self.features = trials, objects, features
        self.obs_size = 2 * features
        self.pool = torch.rand(objects, features, generator=torch.Generator().manual_seed(POOL_SEED))

    def reset(self, u: torch.Tensor) -> HarlowState:
        first = (u[:, 0] * self.objects).long().clamp(max=self.objects - 1)
        # the second object: any of the other objects - 1, each as likely
        second = (u[:, 1] * (self.objects - 1)).long().clamp(max=self.objects - 2)
        second = second + (second >= first).long()
        return HarlowState(self.pool[first], self.pool[second], u[:, 2] < 0.5)

    def sides(self, state: HarlowState) -> torch.Tensor:
        """[B, 2 * features]: the left object's features, then the right one's."""
        left = state.left.unsqueeze(1)
        return torch.cat(
            [torch.where(left, state.rewarded, state.other), torch.where(left, state.other, state.rewarded)],
            1,
        )

    def first_obs(self, state: HarlowState) -> torch.Tensor:
        return self.sides(state)

    def step(self, state: HarlowState, action: torch.Tensor, u: torch.Tensor) -> Step:
        reward = ((action == 0) == state.left).float()
        state = state._replace(left=u[:, 0] < 0.5)
        return Step(state, self.sides(state), reward, 1.0 - reward)
