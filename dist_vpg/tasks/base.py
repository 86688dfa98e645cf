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

    def step(self, state: NamedTuple, action: torch.Tensor, u: torch.Tensor) -> Step: ...
