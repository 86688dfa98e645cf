"""The DP policies against brute force over whole histories, and against the exact figures for 100
trials: Bayes-optimal (independent 1.748, dependent 1.221 / 0.625 / 1.000 / 2.312), the best policy of
a discounted objective, and the A2C fixed point with an entropy bonus. The two-step Bayes-optimal
player (greedy on the posterior) against expectimax over every outcome."""

import numpy as np
import pytest
import torch

from dist_vpg import evaluation
from dist_vpg.tasks import DEPENDENT_SETS, TwoStep
from dist_vpg.tasks.bandit import bayes
from dist_vpg.tasks.two_step import bayes as two_step_bayes
from dist_vpg.tasks.two_step import stay


def brute_force_value(
    trials: int, prior_points: np.ndarray, weights: np.ndarray, gamma: float = 1.0
) -> float:
    """Expectimax of the gamma-discounted reward over every history of (arm, outcome), with
    predictive probabilities integrated numerically over the prior: no counts, no conjugacy, no
    shared states. prior_points: [K, 2] each arm's pay probability at a prior point; weights: [K]."""

    def value(likelihood: np.ndarray, left: int) -> float:
        if left == 0:
            return 0.0
        best = -1.0
        for arm in (0, 1):
            p = prior_points[:, arm]
            paid = likelihood * p
            chance = paid.sum() / likelihood.sum()
            worth = chance * (1 + gamma * value(paid, left - 1)) + (1 - chance) * gamma * value(
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


@pytest.mark.parametrize("gamma", [0.5, 0.9])
def test_discounted_dp_equals_brute_force(gamma):
    p1, p2 = np.meshgrid(grid(300), grid(300), indexing="ij")
    points = np.stack([p1.ravel(), p2.ravel()], axis=1)
    want = brute_force_value(5, points, np.full(len(points), 1.0 / len(points)), gamma)
    assert bayes.independent(5, gamma).value == pytest.approx(want, abs=1e-5)
    p = grid(20000)
    want = brute_force_value(6, np.stack([p, 1 - p], axis=1), np.full(len(p), 1.0 / len(p)), gamma)
    assert bayes.dependent(6, None, gamma).value == pytest.approx(want, abs=1e-6)


# Best policy of each objective, scored on undiscounted regret at trial 100 (independent arms):
# greedy for the discount alone, and the A2C fixed point pi ~ exp(Q / beta_e) with an entropy bonus.
DISCOUNTED = {0.8: 2.153, 0.9: 1.980, 0.95: 1.850, 0.97: 1.798, 0.98: 1.774, 0.99: 1.757, 0.995: 1.751}
SOFT = {
    (0.9, 0.05): 2.00,
    (0.9, 0.02): 1.91,
    (1.0, 0.05): 2.13,
    (1.0, 0.02): 1.83,
    (1.0, 0.01): 1.77,
    (1.0, 0.005): 1.76,
}


def test_objective_ceilings_match_the_exact_figures():
    for gamma, regret in DISCOUNTED.items():
        assert bayes.independent(100, gamma).regret(100) == pytest.approx(regret, abs=1e-3), gamma
    for (gamma, beta), regret in SOFT.items():
        assert bayes.independent(100, gamma, beta).regret(100) == pytest.approx(regret, abs=0.01), gamma
    # the soft-max policy is stochastic where the arms are close, and near-greedy where they are not
    soft = bayes.independent(20, 1.0, 0.05)
    assert soft.p_arm1[0][0, 0, 0] == pytest.approx(0.5)
    assert 0.0 < soft.p_arm1[10].max() < 1.0 or soft.p_arm1[10].max() == pytest.approx(1.0, abs=1e-3)
    # on dependent arms either arm tells as much about p, so exploring buys nothing and the discount
    # costs nothing: the discounted policy is the Bayes-optimal one
    assert bayes.dependent(100, None, 0.9).regret(100) == pytest.approx(bayes.dependent(100).regret(100))
    assert bayes.dependent(100, None, 1.0, 0.05).regret(100) > bayes.dependent(100).regret(100) + 0.05


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


def two_step_expectimax(task, belief: float, left: int, policy=None) -> float:
    """The best expected reward over `left` trials of the two-step task from P(state 0 good) =
    belief, over every action and every outcome (state reached, reward), with the posterior written
    out from Bayes' rule here; or the expected reward of `policy` (belief -> action) if given."""
    if left == 0:
        return 0.0
    worth = []
    for action in (0, 1):
        total = 0.0
        for reached in (0, 1):
            p_reach = task.common_prob if reached == action else 1 - task.common_prob
            for reward in (0, 1):
                # P(reward | reached, which state is good)
                good = task.reward_high if reward else 1 - task.reward_high
                bad = task.reward_low if reward else 1 - task.reward_low
                if_0 = good if reached == 0 else bad
                if_1 = bad if reached == 0 else good
                chance = belief * if_0 + (1 - belief) * if_1
                post = belief * if_0 / chance
                after = post * (1 - task.swap_prob) + (1 - post) * task.swap_prob
                total += p_reach * chance * (reward + two_step_expectimax(task, after, left - 1, policy))
        worth.append(total)
    return max(worth) if policy is None else worth[policy(belief)]


@pytest.mark.parametrize("swap_prob", [0.025, 0.2])
def test_two_step_greedy_on_the_posterior_is_optimal(swap_prob):
    task = TwoStep(trials=5, swap_prob=swap_prob)
    player = two_step_bayes.TwoStepBayes(task)
    beliefs = torch.linspace(0, 1, 41, dtype=torch.float64)
    # the player's choices are greedy on the expected reward now, and its posterior is Bayes' rule
    greedy_now = lambda b: int(b < 0.5)  # state 0 is reached commonly by action 0
    acted = player.act(beliefs, torch.zeros(41))
    assert acted.tolist() == [greedy_now(b) if b != 0.5 else 1 for b in beliefs.tolist()]
    for belief in (0.5, 0.3, 0.62, 0.9, 0.05):
        for left in (1, 3, 5):
            best = two_step_expectimax(task, belief, left)
            assert two_step_expectimax(task, belief, left, greedy_now) == pytest.approx(best, abs=1e-12)
        for reached, reward in ((0, 1.0), (1, 1.0), (0, 0.0), (1, 0.0)):
            post = player.update(
                torch.tensor([belief], dtype=torch.float64), torch.tensor([reached]), torch.tensor([reward])
            )
            like = [
                task.reward_high if (state == reached) == (reward > 0) else 1 - task.reward_high
                for state in (0, 1)
            ]
            p = belief * like[0] / (belief * like[0] + (1 - belief) * like[1])
            assert post.item() == pytest.approx(p * (1 - swap_prob) + (1 - p) * swap_prob)
    # where rewards are not symmetric the argument fails, and no baseline is offered
    assert player.applies(task) and not player.applies(TwoStep(reward_high=0.8, reward_low=0.1))


@pytest.mark.slow
def test_two_step_bayes_player_matches_the_simulated_figures():
    """70.59 reward per episode and pooled stay probabilities 1.00, 0.66, 0.66, 1.00 (200k episodes)."""
    task = TwoStep()
    r = evaluation.evaluate(two_step_bayes.player(task), task, 40000, seed=3)
    reward = r.rewards.sum(0)
    assert abs(reward.mean() - 70.59) < 4 * reward.std() / np.sqrt(len(reward)) + 0.02
    rewarded, common, stayed = stay.transitions(r.actions, r.rewards, r.extra["common"])
    pooled = {
        (w, c): stayed[(rewarded == w) & (common == c)].mean() for w in (True, False) for c in (True, False)
    }
    assert pooled[True, True] > 0.995 and pooled[False, False] > 0.995
    assert pooled[True, False] == pytest.approx(0.66, abs=0.01)
    assert pooled[False, True] == pytest.approx(0.66, abs=0.01)
