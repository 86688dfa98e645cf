"""A task from outside dist_vpg, the one docs' "Adding a task" walks through: guess a biased coin.

Each episode draws a coin that comes up heads with probability `bias` or 1 - `bias`, each as likely,
and flips it once a trial. The agent calls the flip (action 0: heads, 1: tails) before it is made,
is paid 1 when right, and then sees how the coin fell. The best policy calls whichever side has come
up more often so far (a guess at a tie): greedy on the posterior over the two coins.

It lives outside the package on purpose: tests/test_outside_task.py trains it with
`task.name=coin:Coin` (this directory on PYTHONPATH), evaluates it against its own players, plays it
in dist_vpg.play and runs Gymnasium's checker on it, with no edit to dist_vpg/. `NativeCoin` is the
same task with a native step (coin.c), which the native rollout plays without an edit either.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import NamedTuple

import torch

from dist_vpg.native import abi
from dist_vpg.results import Played, Player, played
from dist_vpg.settings import TaskSettings, require, setting
from dist_vpg.tasks import Step, TaskUnit


@dataclass(frozen=True)
class CoinSettings(TaskSettings):
    name: str = "coin"
    trials: int = 20
    bias: float = setting(0.8, "P(heads) of a heads-biased coin; a tails-biased one has 1 - bias")

    def check(self) -> None:
        super().check()
        require(0.5 <= self.bias <= 1.0, "task.bias", "must lie in [0.5, 1]")


class CoinState(NamedTuple):
    heads: torch.Tensor  # [B] P(heads) of each episode's coin


class Coin(TaskUnit):
    Settings = CoinSettings
    gym_ids = {"coin/Coin-v0": {}}

    obs_size = 2  # how the last flip fell, one-hot: heads, tails
    num_actions = 2
    episode_draws = 1  # which coin
    trial_draws = 1  # the flip
    max_reward = 1.0

    def __init__(self, trials: int = 20, bias: float = 0.8):
        self.trials, self.bias = trials, bias

    def reset(self, u: torch.Tensor) -> CoinState:
        return CoinState(torch.where(u[:, 0] < 0.5, self.bias, 1.0 - self.bias))

    def step(self, state: CoinState, action: torch.Tensor, u: torch.Tensor) -> Step:
        tails = (u[:, 0] >= state.heads).long()
        reward = (action == tails).float()
        p_called = torch.where(action == 0, state.heads, 1.0 - state.heads)
        regret = torch.maximum(state.heads, 1.0 - state.heads) - p_called
        obs = torch.nn.functional.one_hot(tails, 2).float()
        return Step(state, obs, reward, regret)

    def players(self, objective=None) -> dict[str, Player]:
        return {"majority": self.majority, "random": self.random}

    def majority(self, draws, _: int) -> Played:
        """Calls the side seen more often so far; ties by the action noise."""
        state, lead = self.reset(draws.episode), torch.zeros(draws.action.shape[1])  # heads - tails
        regrets, rewards, actions = [], [], []
        for t in range(self.trials):
            tie = (draws.action[t] >= 0.5).long()
            action = torch.where(lead == 0, tie, (lead < 0).long())
            step = self.step(state, action, draws.trial[t])
            lead = lead + 1 - 2 * step.obs[:, 1]
            regrets.append(step.regret)
            rewards.append(step.reward)
            actions.append(action)
        return played(regrets, rewards, actions)

    def random(self, draws, _: int) -> Played:
        state, regrets, rewards, actions = self.reset(draws.episode), [], [], []
        for t in range(self.trials):
            action = (draws.action[t] >= 0.5).long()
            step = self.step(state, action, draws.trial[t])
            regrets.append(step.regret)
            rewards.append(step.reward)
            actions.append(action)
        return played(regrets, rewards, actions)

    def rules(self) -> str:
        return "Call the coin: 1 for heads, 2 for tails. It is biased, one way or the other."

    def describe(self, step: Step) -> str:
        return f"it came up {'heads' if step.obs[0, 0] else 'tails'}: reward {step.reward.item():g}"

    def reveal(self, states, last: CoinState) -> str:
        return f"Revealed: the coin came up heads with p = {float(last.heads[0]):.2f}.\n"


class NativeCoin(Coin):
    """The coin with its step in C as well (coin.c, beside this file): the native rollout plays it."""

    native_step = abi.NativeStep(__file__, "coin.c")

    def native_state(self, state: CoinState, keep: list) -> ctypes.Structure:
        return self.native_step.State(abi.floats(state.heads, keep))
