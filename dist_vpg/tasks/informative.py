"""Dependent arms II (Wang et al. 2016, section 3.1.3): one arm tells where the treasure is.

Of `arms` arms, the first arms - 1 are ordinary: one of them, the target, drawn anew each episode,
pays 5 and the others 1. The last arm is informative: it pays scale * (target + 1) / (arms - 1),
0.1 times the target's 1-based index with 11 arms and scale 1 (the paper's task; a larger scale
makes the payout easier to read: configs/informative_arms_stage1.yaml). Payouts are deterministic.
Over 5 trials the best policy pulls the informative arm once, reads the target off its payout and
pulls the target 4 times: 5 * 4 + 0.1 * index, 20.55 on average with 11 arms, against 5 * 5 for an
oracle. A learner that never pulls the informative arm must search the ordinary arms one by one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dist_vpg.tasks.base import StartsBlank, Step

TARGET_PAYS, OTHERS_PAY = 5.0, 1.0


class InformativeState(NamedTuple):
    target: torch.Tensor  # [B] long: the ordinary arm that pays TARGET_PAYS
    payouts: torch.Tensor  # [B, arms] what each arm pays


class InformativeArms(StartsBlank):
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
