"""What every task is: a batch of B episodes stepped in lockstep, with no randomness of its own."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch


class Step(NamedTuple):
    state: NamedTuple  # the task's own per-episode state after this trial
    obs: torch.Tensor  # [B, obs_size] what the agent sees on the next trial
    reward: torch.Tensor  # [B] float 0/1
    regret: torch.Tensor  # [B] expected reward of the best action minus that of the chosen one


class Task(Protocol):
    obs_size: int
    num_actions: int
    trials: int
    episode_draws: int  # uniforms per episode consumed by reset
    trial_draws: int  # uniforms per trial consumed by step
    max_reward: float  # the most one trial pays (rewards lie in [0, max_reward])

    def reset(self, u: torch.Tensor) -> NamedTuple: ...  # u [B, episode_draws]

    def first_obs(self, state: NamedTuple) -> torch.Tensor: ...  # [B, obs_size] seen on trial 1

    def step(self, state: NamedTuple, action: torch.Tensor, u: torch.Tensor) -> Step: ...


class StartsBlank:
    """For tasks that show nothing before the first choice (all but Harlow): a first observation
    of zeros. The first field of the task's state must have the batch as its first dimension."""

    obs_size: int

    def first_obs(self, state: NamedTuple) -> torch.Tensor:
        return torch.zeros(len(state[0]), self.obs_size)
