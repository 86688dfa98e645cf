"""The Bayes-optimal player of 2-armed Bernoulli bandits, by exact dynamic programming. The same DP
also gives the best policy of a discounted, entropy-regularized objective: the ceiling of what A2C
with that gamma and entropy bonus can reach.

It maximises the expected total reward over the episode under the task's own prior, so its expected
regret is the floor no agent can beat on average. Both arms' posteriors are summed up by counts:

- independent arms, p1 and p2 ~ U(0, 1): Beta(1 + s, 1 + f) per arm, state (s1, f1, s2, f2);
- dependent arms, p for arm 0 and 1 - p for arm 1: a success of arm 0 and a failure of arm 1 are the
  same evidence, so the state is a = s0 + f1 out of t trials.

Values run backward from the horizon; the table of choices is then played forward. With more than
2 independent arms the state space is out of reach and no Bayes-optimal baseline is offered.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np

TIE = 0.5  # the chance of arm 1 where both arms are worth the same: a tie broken at random


class Solution(NamedTuple):
    value: float  # the objective from trial 0 under the prior: expected (discounted) total reward
    score: float  # expected undiscounted total reward of the same policy over the episode
    expected_best: float  # expected reward per trial of the better arm under the prior
    p_arm1: list[np.ndarray]  # p_arm1[t]: float16 table of the chance of pulling arm 1 at trial t

    def regret(self, trials: int) -> float:
        """Expected (undiscounted) regret summed over the episode."""
        return trials * self.expected_best - self.score


def _policy(q0: np.ndarray, q1: np.ndarray, beta: float) -> np.ndarray:
    """The chance of arm 1: greedy (ties at random) for beta = 0, else soft-max, exp(Q / beta)."""
    if beta == 0:
        return np.where(np.isclose(q0, q1, rtol=0, atol=1e-12), TIE, (q1 > q0).astype(np.float64))
    return 0.5 * (1 + np.tanh((q1 - q0) / (2 * beta)))  # a logistic that cannot overflow


@lru_cache(maxsize=4)
def independent(trials: int, gamma: float = 1.0, beta: float = 0.0) -> Solution:
    """Independent arms with uniform priors. p_arm1[t] is indexed [s1, f1, s2] (f2 = t - s1 - f1 - s2).

    gamma = 1, beta = 0 is the Bayes-optimal policy. Otherwise the policy is the best one for the
    discounted objective (beta = 0), or the fixed point of A2C with an entropy bonus beta: at every
    state the policy is a soft-max of its own discounted action values (reward only) over beta.
    Both are found backward from the horizon, since the trial index is part of the state."""
    value = np.zeros((trials + 1,) * 3)  # the objective at t = trials: nothing left to earn
    score = np.zeros((trials + 1,) * 3)  # undiscounted reward still to come
    p_arm1: list[np.ndarray] = [np.empty(0, np.float16)] * trials
    for t in range(trials - 1, -1, -1):
        s1, f1, s2 = np.ogrid[: t + 1, : t + 1, : t + 1]
        n2 = t - s1 - f1  # pulls of arm 2 so far
        valid = s2 <= n2
        p1 = (s1 + 1) / (s1 + f1 + 2)
        p2 = (s2 + 1) / np.maximum(n2 + 2, 1)
        # each arm: its chance to pay, the state after it paid, the state after it did not
        arms = (
            (p1, np.s_[1:, :-1, :-1], np.s_[:-1, 1:, :-1]),
            (p2, np.s_[:-1, :-1, 1:], np.s_[:-1, :-1, :-1]),
        )
        q = [p * (1 + gamma * value[win]) + (1 - p) * gamma * value[lose] for p, win, lose in arms]
        u = [p * (1 + score[win]) + (1 - p) * score[lose] for p, win, lose in arms]
        pick = _policy(q[0], q[1], beta)
        value = np.where(valid, q[0] + pick * (q[1] - q[0]), 0.0)
        score = np.where(valid, u[0] + pick * (u[1] - u[0]), 0.0)
        p_arm1[t] = np.where(valid, pick, 0.0).astype(np.float16)
    return Solution(float(value[0, 0, 0]), float(score[0, 0, 0]), 2.0 / 3.0, p_arm1)


@lru_cache(maxsize=8)
def dependent(
    trials: int, levels: tuple[float, float] | None = None, gamma: float = 1.0, beta: float = 0.0
) -> Solution:
    """Arm 0 pays p, arm 1 pays 1 - p; p ~ U(0, 1) when levels is None, else one of the two levels
    with equal chance. p_arm1[t] is indexed by a = successes of arm 0 + failures of arm 1.
    gamma and beta as for `independent`."""
    value = np.zeros(trials + 1)
    score = np.zeros(trials + 1)
    p_arm1: list[np.ndarray] = [np.empty(0, np.float16)] * trials
    for t in range(trials - 1, -1, -1):
        a = np.arange(t + 1)
        p0 = predictive(a, t - a, levels)  # chance that arm 0 pays now; arm 1 pays 1 - p0
        # arm 0: a success adds to a; arm 1: a failure adds to a, a success to b (same index a)
        q0 = p0 * (1 + gamma * value[1:]) + (1 - p0) * gamma * value[:-1]
        q1 = (1 - p0) * (1 + gamma * value[:-1]) + p0 * gamma * value[1:]
        u0 = p0 * (1 + score[1:]) + (1 - p0) * score[:-1]
        u1 = (1 - p0) * (1 + score[:-1]) + p0 * score[1:]
        pick = _policy(q0, q1, beta)
        value, score = q0 + pick * (q1 - q0), u0 + pick * (u1 - u0)
        p_arm1[t] = pick.astype(np.float16)
    best = 0.75 if levels is None else max(levels[0], 1 - levels[0])
    return Solution(float(value[0]), float(score[0]), best, p_arm1)


def predictive(a: np.ndarray, b: np.ndarray, levels: tuple[float, float] | None) -> np.ndarray:
    """P(arm 0 pays | a pieces of evidence for p, b against) under the prior over p."""
    if levels is None:
        return (a + 1) / (a + b + 2)
    q = levels[0]
    # posterior weight of p = q against p = levels[1] = 1 - q, as a logistic of the evidence
    w = 1 / (1 + np.exp(-(a - b) * math.log(q / (1 - q))))
    return w * q + (1 - w) * (1 - q)


class BayesOptimal:
    """A DP policy as a baseline policy: (successes, pulls, t, rng) -> actions. With gamma = 1 and
    beta = 0 (the defaults) the Bayes-optimal policy; otherwise the best policy of a discounted,
    entropy-regularized objective (see `independent`)."""

    def __init__(
        self,
        distribution: str,
        trials: int,
        levels: tuple[float, float] | None = None,
        gamma: float = 1.0,
        beta: float = 0.0,
    ):
        self.dependent = distribution != "independent"
        self.solution = (
            dependent(trials, levels, gamma, beta) if self.dependent else independent(trials, gamma, beta)
        )

    def __call__(self, successes: np.ndarray, pulls: np.ndarray, t: int, rng) -> np.ndarray:
        s = successes.astype(np.int64)
        f = pulls.astype(np.int64) - s
        table = self.solution.p_arm1[t]
        p = table[s[:, 0] + f[:, 1]] if self.dependent else table[s[:, 0], f[:, 0], s[:, 1]]
        return (rng.random(len(p)) < p).astype(np.int64)
