"""The two-step task's Bayes-optimal player: greedy on the posterior that second-stage state 0 is the
good one (`TwoStepBayes` says why that is optimal), and the player that plays it on the agent's
episodes."""

from __future__ import annotations

import torch

from dist_vpg.noise import Noise
from dist_vpg.results import Played, Player, played


class TwoStepBayes:
    """The Bayes-optimal player of the two-step task: greedy on the posterior that second-stage state
    0 is the good one.

    Why greedy is optimal: the only hidden quantity is which state is good, and each trial's outcome
    (state reached, reward) moves the posterior by a likelihood ratio that depends on the state
    reached only through a relabelling. With reward_high + reward_low = 1, reaching state 1 and
    seeing r is exactly as informative as reaching state 0 and seeing 1 - r, so the distribution of
    the next posterior, up to the swap of the two states (under which the value of a posterior is
    unchanged), is the same whichever action is taken. No action buys more information than another,
    and the best action is the one with the higher expected reward now. tests/test_bayes.py checks
    this against expectimax over every outcome on short horizons. Where reward_high + reward_low != 1
    the argument fails and no such baseline is offered (`applies`).
    """

    def __init__(self, task):
        self.task = task

    @staticmethod
    def applies(task) -> bool:
        return abs(task.reward_high + task.reward_low - 1.0) < 1e-9

    def expected_rewards(self, belief: torch.Tensor) -> torch.Tensor:
        """[B, 2] expected reward of each first-stage action when P(state 0 is good) = belief [B]."""
        task, c = self.task, self.task.common_prob
        p0 = belief * task.reward_high + (1 - belief) * task.reward_low  # reward chance in state 0
        p1 = task.reward_high + task.reward_low - p0
        return torch.stack([c * p0 + (1 - c) * p1, c * p1 + (1 - c) * p0], dim=1)

    def update(self, belief: torch.Tensor, reached: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        """The posterior after seeing (state reached, reward), then the chance of a swap."""
        task = self.task
        pays = torch.where(reward > 0, task.reward_high, 1 - task.reward_high)  # r's chance in the good state
        misses = torch.where(reward > 0, task.reward_low, 1 - task.reward_low)  # and in the bad one
        like0 = torch.where(reached == 0, pays, misses)  # P(r | state 0 good)
        like1 = torch.where(reached == 0, misses, pays)
        post = belief * like0 / (belief * like0 + (1 - belief) * like1)
        return post * (1 - task.swap_prob) + (1 - post) * task.swap_prob

    def act(self, belief: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Greedy on the expected reward; ties broken by the uniforms u [B]."""
        q = self.expected_rewards(belief)
        tie = (q[:, 0] - q[:, 1]).abs() < 1e-12
        return torch.where(tie, (u < 0.5).long(), (q[:, 1] > q[:, 0]).long())


def player(task) -> Player:
    """The Bayes-optimal two-step player on the agent's episodes; its ties (only on the first trial)
    are broken by the agent's own action noise."""
    bayes = TwoStepBayes(task)

    def play(draws: Noise, _: int) -> Played:
        state = task.reset(draws.episode)
        belief = torch.full((draws.action.shape[1],), 0.5, dtype=torch.float64)
        regrets, rewards, actions, common = [], [], [], []
        for t in range(task.trials):
            action = bayes.act(belief, draws.action[t])
            step = task.step(state, action, draws.trial[t])
            state, reached = step.state, step.obs.argmax(1)
            belief = bayes.update(belief, reached, step.reward)
            regrets.append(step.regret)
            rewards.append(step.reward)
            actions.append(action)
            common.append(reached == action)
        return played(regrets, rewards, actions, common=torch.stack(common[:-1]))

    return play
