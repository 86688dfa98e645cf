"""The Bayes-optimal finite-horizon policy for 2-armed Bernoulli bandits, by exact dynamic programming.

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

TIE = 2  # a choice-table entry where both arms are worth the same


class Solution(NamedTuple):
    value: float  # expected total reward from trial 0 under the prior
    expected_best: float  # expected reward per trial of the better arm under the prior
    choices: list[np.ndarray]  # choices[t]: int8 table of the arm to pull at trial t (or TIE)

    def regret(self, trials: int) -> float:
        """Expected regret summed over the episode."""
        return trials * self.expected_best - self.value


def _choose(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    choice = (q1 > q0).astype(np.int8)
    choice[np.isclose(q0, q1, rtol=0, atol=1e-12)] = TIE
    return choice


@lru_cache(maxsize=4)
def independent(trials: int) -> Solution:
    """Independent arms with uniform priors. choices[t] is indexed [s1, f1, s2] (f2 = t - s1 - f1 - s2)."""
    value = np.zeros((trials + 1,) * 3)  # V at t = trials: nothing left to earn
    choices: list[np.ndarray] = [np.empty(0, np.int8)] * trials
    for t in range(trials - 1, -1, -1):
        s1, f1, s2 = np.ogrid[: t + 1, : t + 1, : t + 1]
        n2 = t - s1 - f1  # pulls of arm 2 so far
        valid = s2 <= n2
        p1 = (s1 + 1) / (s1 + f1 + 2)
        p2 = (s2 + 1) / np.maximum(n2 + 2, 1)
        v = value  # V_{t+1}, indexed up to t + 1
        q0 = p1 * (1 + v[1:, :-1, :-1]) + (1 - p1) * v[:-1, 1:, :-1]
        q1 = p2 * (1 + v[:-1, :-1, 1:]) + (1 - p2) * v[:-1, :-1, :-1]
        value = np.where(valid, np.maximum(q0, q1), 0.0)
        choices[t] = np.where(valid, _choose(q0, q1), 0).astype(np.int8)
    return Solution(float(value[0, 0, 0]), 2.0 / 3.0, choices)


@lru_cache(maxsize=8)
def dependent(trials: int, levels: tuple[float, float] | None = None) -> Solution:
    """Arm 0 pays p, arm 1 pays 1 - p; p ~ U(0, 1) when levels is None, else one of the two levels
    with equal chance. choices[t] is indexed by a = successes of arm 0 + failures of arm 1."""
    value = np.zeros(trials + 1)
    choices: list[np.ndarray] = [np.empty(0, np.int8)] * trials
    for t in range(trials - 1, -1, -1):
        a = np.arange(t + 1)
        p0 = _predictive(a, t - a, levels)  # chance that arm 0 pays now; arm 1 pays 1 - p0
        v = value
        # arm 0: a success adds to a; arm 1: a failure adds to a, a success to b (same index a)
        q0 = p0 * (1 + v[1:]) + (1 - p0) * v[:-1]
        q1 = (1 - p0) * (1 + v[:-1]) + p0 * v[1:]
        value = np.maximum(q0, q1)
        choices[t] = _choose(q0, q1)
    best = 0.75 if levels is None else max(levels[0], 1 - levels[0])
    return Solution(float(value[0]), best, choices)


def _predictive(a: np.ndarray, b: np.ndarray, levels: tuple[float, float] | None) -> np.ndarray:
    """P(arm 0 pays | a pieces of evidence for p, b against) under the prior over p."""
    if levels is None:
        return (a + 1) / (a + b + 2)
    q = levels[0]
    # posterior weight of p = q against p = levels[1] = 1 - q, as a logistic of the evidence
    w = 1 / (1 + np.exp(-(a - b) * math.log(q / (1 - q))))
    return w * q + (1 - w) * (1 - q)


class BayesOptimal:
    """The Bayes-optimal policy as a baseline policy: (successes, pulls, t, rng) -> actions."""

    def __init__(self, distribution: str, trials: int, levels: tuple[float, float] | None = None):
        self.dependent = distribution != "independent"
        self.solution = dependent(trials, levels) if self.dependent else independent(trials)

    def __call__(self, successes: np.ndarray, pulls: np.ndarray, t: int, rng) -> np.ndarray:
        s = successes.astype(np.int64)
        f = pulls.astype(np.int64) - s
        table = self.solution.choices[t]
        choice = table[s[:, 0] + f[:, 1]] if self.dependent else table[s[:, 0], f[:, 0], s[:, 1]]
        ties = choice == TIE
        return np.where(ties, rng.integers(0, 2, size=len(choice)), choice)
