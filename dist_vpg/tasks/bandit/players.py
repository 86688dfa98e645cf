"""Classical bandit algorithms, played on exactly the episodes the agent is evaluated on.

Each baseline sees the same arm probabilities and the same reward draws as the agent (the task and
its noise); its own choices use a generator seeded from the evaluation seed. All episodes advance
in lockstep, as for the agent.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from dist_vpg.noise import Noise
from dist_vpg.results import Played, Player

# A policy maps (successes [B, A], pulls [B, A], trial t, rng) to actions [B].
Policy = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]


def random_policy(successes, pulls, t, rng) -> np.ndarray:
    return rng.integers(0, successes.shape[1], size=successes.shape[0])


def ucb1(successes, pulls, t, rng) -> np.ndarray:
    """Auer et al. (2002): every arm once, then the highest mean + sqrt(2 ln t / n); ties at random."""
    untried = pulls == 0
    mean = successes / np.maximum(pulls, 1)
    score = mean + np.sqrt(2.0 * np.log(max(t, 1)) / np.maximum(pulls, 1))
    score = np.where(untried, np.inf, score) + 1e-9 * rng.random(score.shape)
    return score.argmax(axis=1)


def thompson(successes, pulls, t, rng) -> np.ndarray:
    """Thompson sampling with Beta(1, 1) priors: the arm whose posterior sample is highest."""
    return rng.beta(successes + 1.0, pulls - successes + 1.0).argmax(axis=1)


BASELINES: dict[str, Policy] = {"random": random_policy, "ucb1": ucb1, "thompson": thompson}


def play(policy: Policy, task, noise: Noise, seed: int) -> tuple[torch.Tensor, ...]:
    """Expected regret, reward and action of each trial, each [T, B], of `policy` on the episodes of
    `noise`."""
    state = task.reset(noise.episode)
    trials, batch = noise.action.shape
    successes = np.zeros((batch, task.num_actions))
    pulls = np.zeros((batch, task.num_actions))
    rng = np.random.default_rng(seed)
    rows = np.arange(batch)
    regrets, rewards, actions = [], [], []
    for t in range(trials):
        action = policy(successes, pulls, t, rng)
        step = task.step(state, torch.from_numpy(action), noise.trial[t])
        successes[rows, action] += step.reward.numpy()
        pulls[rows, action] += 1
        regrets.append(step.regret)
        rewards.append(step.reward)
        actions.append(torch.from_numpy(action))
    return torch.stack(regrets), torch.stack(rewards), torch.stack(actions)


def player(policy: Policy, task) -> Player:
    """`policy` as a player of `task`'s episodes, its own choices seeded by the chunk seed."""

    def play_chunk(draws: Noise, chunk_seed: int) -> Played:
        regrets, rewards, actions = play(policy, task, draws, chunk_seed)
        return Played(regrets, rewards, actions.to(torch.int8), {})

    return play_chunk
