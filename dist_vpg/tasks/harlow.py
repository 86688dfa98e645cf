"""Harlow's learning-to-learn task with abstract objects (Wang et al. 2018, section 3.2.2, without
pixels): learn within one trial which of two new objects pays, and then choose it on either side.

Every episode draws two objects from a pool of `objects` (each a fixed random vector of `features`
numbers in [0, 1], the same pool for every run) and pays 1 for choosing the first of them, 0 for
the other. On every trial the agent sees both objects, left then right, and chooses a side (action
0: left, 1: right); which object stands on which side is drawn anew each trial. The rewarded object
is a fresh draw each episode, so no object is worth anything in itself: what pays is remembering
which one paid in this episode. The best policy guesses on trial 1 (0.5) and is right from then on:
0.5 expected regret an episode, against T / 2 for a guess every trial or for a choice by side.

With `fixation`, every trial starts with a step that shows nothing, as the paper's trials start with
a fixation cross: the agent's action there is ignored and pays nothing, and the previous choice's
reward arrives in it. The agent then has a step to take in which object paid before the next pair
appears; without it, it must work out which object paid and where that object now stands in one
step. The task then runs 2 * trials agent steps; `choice_steps` says which of them are choices.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dist_vpg.tasks.base import Step

POOL_SEED = 20_180_514  # the pool of objects is part of the task: one fixed draw, never the noise


class HarlowState(NamedTuple):
    rewarded: torch.Tensor  # [B, features] the object that pays
    other: torch.Tensor  # [B, features] the object that does not
    left: torch.Tensor  # [B] bool: the rewarded object stands on the left at the next choice
    choosing: bool  # whether the next step is a choice (always, without fixation)


class Harlow:
    num_actions = 2  # left, right
    episode_draws = 3  # the two objects, and the first choice's sides
    trial_draws = 1  # the next choice's sides
    max_reward = 1.0

    def __init__(self, trials: int = 6, objects: int = 1000, features: int = 8, fixation: bool = False):
        if objects < 2:
            raise ValueError(f"Harlow needs a pool of at least 2 objects, not {objects}")
        self.choices, self.objects, self.features, self.fixation = trials, objects, features, fixation
        self.trials = 2 * trials if fixation else trials  # agent steps an episode
        self.choice_steps = list(range(1, self.trials, 2)) if fixation else list(range(trials))
        self.obs_size = 2 * features
        self.pool = torch.rand(objects, features, generator=torch.Generator().manual_seed(POOL_SEED))

    def reset(self, u: torch.Tensor) -> HarlowState:
        first = (u[:, 0] * self.objects).long().clamp(max=self.objects - 1)
        # the second object: any of the other objects - 1, each as likely
        second = (u[:, 1] * (self.objects - 1)).long().clamp(max=self.objects - 2)
        second = second + (second >= first).long()
        return HarlowState(self.pool[first], self.pool[second], u[:, 2] < 0.5, not self.fixation)

    def sides(self, state: HarlowState) -> torch.Tensor:
        """[B, 2 * features]: the left object's features, then the right one's."""
        left = state.left.unsqueeze(1)
        return torch.cat(
            [torch.where(left, state.rewarded, state.other), torch.where(left, state.other, state.rewarded)],
            1,
        )

    def observe(self, state: HarlowState) -> torch.Tensor:
        """The objects where a choice comes next, else nothing (a fixation step)."""
        return self.sides(state) if state.choosing else torch.zeros(len(state.left), self.obs_size)

    first_obs = observe  # the first trial shows what every trial shows

    def step(self, state: HarlowState, action: torch.Tensor, u: torch.Tensor) -> Step:
        if not state.choosing:  # fixation: nothing to choose; the objects appear next
            nothing = torch.zeros(len(action))
            state = state._replace(choosing=True)
            return Step(state, self.observe(state), nothing, nothing)
        reward = ((action == 0) == state.left).float()
        state = state._replace(left=u[:, 0] < 0.5, choosing=not self.fixation)
        return Step(state, self.observe(state), reward, 1.0 - reward)

    def rewarded_left(self, episode: torch.Tensor, trial: torch.Tensor) -> torch.Tensor:
        """[choices, B] bool: whether the rewarded object stood on the left at each choice of the
        episodes of these draws (episode [B, episode_draws], trial [T, B, trial_draws])."""
        state, found = self.reset(episode), []
        for t in range(self.trials):
            if state.choosing:
                found.append(state.left)
            state = self.step(state, torch.zeros(len(state.left), dtype=torch.long), trial[t]).state
        return torch.stack(found)
