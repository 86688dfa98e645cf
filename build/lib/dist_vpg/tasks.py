"""Meta-RL tasks that step a batch of B episodes in lockstep: one call advances every episode.

A task holds no randomness of its own: `reset` and `step` turn uniforms drawn elsewhere
(dist_vpg.noise) into task parameters, rewards and transitions, so an episode is reproducible
from its coordinates alone. Tasks know nothing of agents or of torch.distributed.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from dist_vpg.config import TaskConfig

# Dependent-arm bandits draw p for arm 0 from these sets (arm 1 pays 1 - p); None is U(0, 1).
DEPENDENT_SETS = {"dependent": None, "easy": (0.1, 0.9), "medium": (0.25, 0.75), "hard": (0.4, 0.6)}


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

    def reset(self, u: torch.Tensor) -> NamedTuple: ...  # u [B, episode_draws]

    def step(self, state: NamedTuple, action: torch.Tensor, u: torch.Tensor) -> Step: ...


class BanditState(NamedTuple):
    probs: torch.Tensor  # [B, arms] each arm's Bernoulli reward probability
    best: torch.Tensor  # [B] the best arm's probability


class Bandit:
    """N Bernoulli arms whose probabilities are drawn anew for every episode."""

    obs_size = 0
    trial_draws = 1

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


class TwoStepState(NamedTuple):
    good: torch.Tensor  # [B] long: which second-stage state (0 or 1) pays reward_high now
    common: torch.Tensor  # [B] bool: whether the last transition was the common one


class TwoStep:
    """The two-step task of Daw et al. (2011) as used by Wang et al. (2018), one step per trial.

    The first-stage action a leads to second-stage state a with probability common_prob (else to
    1 - a), which pays a reward with probability reward_high if it is the good state, reward_low
    otherwise. After each trial the good state swaps with probability swap_prob. The agent sees the
    second-stage state it reached as the observation of the next trial.
    """

    obs_size = 2
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


def make_task(cfg: TaskConfig) -> Task:
    if cfg.name == "bandit":
        return Bandit(cfg.arms, cfg.distribution, cfg.trials)
    if cfg.name == "two_step":
        return TwoStep(cfg.trials, cfg.common_prob, cfg.reward_high, cfg.reward_low, cfg.swap_prob)
    raise ValueError(f"unknown task {cfg.name!r}")
