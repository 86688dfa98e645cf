"""The Bayes-optimal DP against brute force over whole histories, and against the exact figures
for 100 trials (../shared reference: independent 1.748, dependent 1.221 / 0.625 / 1.000 / 2.312)."""

import numpy as np
import pytest

from dist_vpg import bayes
from dist_vpg.tasks import DEPENDENT_SETS


def brute_force_value(trials: int, prior_points: np.ndarray, weights: np.ndarray) -> float:
    """Expectimax over every history of (arm, outcome), with predictive probabilities integrated
    numerically over the prior: no counts, no conjugacy, no shared states.
    prior_points: [K, 2] each arm's pay probability at a prior point; weights: [K]."""

    def value(likelihood: np.ndarray, left: int) -> float:
        if left == 0:
            return 0.0
        best = -1.0
        for arm in (0, 1):
            p = prior_points[:, arm]
            paid = likelihood * p
            chance = paid.sum() / likelihood.sum()
            worth = chance * (1 + value(paid, left - 1)) + (1 - chance) * value(
                likelihood * (1 - p), left - 1
            )
            best = max(best, worth)
        return best

    return value(weights.copy(), trials)


def grid(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n


@pytest.mark.parametrize("trials", [1, 2, 5])
def test_independent_dp_equals_brute_force(trials):
    p1, p2 = np.meshgrid(grid(400), grid(400), indexing="ij")
    points = np.stack([p1.ravel(), p2.ravel()], axis=1)
    want = brute_force_value(trials, points, np.full(len(points), 1.0 / len(points)))
    assert bayes.independent(trials).value == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("distribution", list(DEPENDENT_SETS))
def test_dependent_dp_equals_brute_force(distribution):
    levels = DEPENDENT_SETS[distribution]
    p = grid(20000) if levels is None else np.array(levels)
    points = np.stack([p, 1 - p], axis=1)
    want = brute_force_value(6, points, np.full(len(p), 1.0 / len(p)))
    assert bayes.dependent(6, levels).value == pytest.approx(want, abs=1e-6)


def test_regret_at_100_trials_matches_the_exact_figures():
    assert bayes.independent(100).regret(100) == pytest.approx(1.748, abs=5e-4)
    known = {"dependent": 1.221, "easy": 0.625, "medium": 1.000, "hard": 2.312}
    for distribution, regret in known.items():
        assert bayes.dependent(100, DEPENDENT_SETS[distribution]).regret(100) == pytest.approx(
            regret, abs=5e-4
        )


def test_policy_follows_the_table_and_breaks_ties_at_random():
    policy = bayes.BayesOptimal("independent", 10)
    rng = np.random.default_rng(0)
    # trial 0: nothing seen, both arms alike: a tie, broken both ways over many episodes
    first = policy(np.zeros((200, 2)), np.zeros((200, 2)), 0, rng)
    assert 50 < first.sum() < 150
    # arm 0 paid 3 of 3, arm 1 paid 0 of 3: arm 0
    chosen = policy(np.array([[3.0, 0.0]]), np.array([[3.0, 3.0]]), 6, rng)
    assert chosen.tolist() == [0]
    dependent = bayes.BayesOptimal("easy", 10, DEPENDENT_SETS["easy"])
    # arm 1 failed twice: evidence that arm 0 is the good one
    assert dependent(np.array([[0.0, 0.0]]), np.array([[0.0, 2.0]]), 2, rng).tolist() == [0]
