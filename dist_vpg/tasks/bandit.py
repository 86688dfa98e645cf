"""Bernoulli bandits: independent arms, or two dependent arms paying p and 1 - p (Wang et al. 2016)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from dist_vpg.tasks.base import StartsBlank, Step

# Dependent-arm bandits draw p for arm 0 from these sets (arm 1 pays 1 - p); None is U(0, 1).
DEPENDENT_SETS = {"dependent": None, "easy": (0.1, 0.9), "medium": (0.25, 0.75), "hard": (0.4, 0.6)}


class BanditState(NamedTuple):
    probs: torch.Tensor  # [B, arms] each arm's Bernoulli reward probability
    best: torch.Tensor  # [B] the best arm's probability


class Bandit(StartsBlank):
    """N Bernoulli arms whose probabilities are drawn anew for every episode."""

    obs_size = 0
    trial_draws = 1
    max_reward = 1.0

    def __init__(self, arms: int = 2, distribution: str = "independent", trials: int = 100):
        if distribution not in ("independent", *DEPENDENT_SETS):
            raise ValueError(f"unknown bandit distribution {distribution!r}")
        if distribution != "independent" and arms != 2:
            raise ValueError(f"{distribution!r} bandits have 2 arms, not {arms}")
        self.num_actions = arms
        self.distribution = distribution
        self.trials = trials
        self.episode_draws = arms
        self._no_obs = torch.zeros(0)

    def reset(self, u: torch.Tensor) -> BanditState:
        if self.distribution == "independent":
            probs = u.clone()
        else:
            levels = DEPENDENT_SETS[self.distribution]
            p = u[:, 0] if levels is None else torch.where(u[:, 0] < 0.5, levels[0], levels[1])
            probs = torch.stack([p, 1.0 - p], dim=1)
        return BanditState(probs, probs.max(dim=1).values)

    def step(self, state: BanditState, action: torch.Tensor, u: torch.Tensor) -> Step:
        chosen = state.probs.gather(1, action.unsqueeze(1)).squeeze(1)  # [B]
        reward = (u[:, 0] < chosen).float()
        regret = state.best - chosen
        return Step(state, self._no_obs.expand(len(action), 0), reward, regret)
