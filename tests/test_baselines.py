"""Baselines against their known regrets (../shared figures: 200k-episode Monte Carlo, independent
2-armed bandits, trial 100): random 16.67, UCB1 5.58, Thompson 2.78, Bayes-optimal 1.748 (exact)."""

import pytest

from dist_vpg import evaluation
from dist_vpg.tasks import Bandit

KNOWN = {"random": 16.67, "ucb1": 5.58, "thompson": 2.78, "bayes_optimal": 1.748}


@pytest.mark.slow
def test_baseline_regrets_match_known_values_within_monte_carlo_error():
    found = evaluation.evaluate_baselines(Bandit(2, "independent", 100), episodes=6000, seed=4)
    for name, known in KNOWN.items():
        m = found[name].metrics()
        # 4 standard errors of this estimate, plus the reference's own (< 0.01)
        assert abs(m["regret_at_end"] - known) < 4 * m["regret_sem"] + 0.01, (name, m)


def test_baselines_play_the_agents_episodes():
    task = Bandit(2, "easy", 20)
    a = evaluation.evaluate_baselines(task, episodes=50, seed=1)
    b = evaluation.evaluate_baselines(task, episodes=50, seed=1)
    for name in task.players():
        assert (a[name].regret == b[name].regret).all()  # deterministic for a seed
    # On easy bandits a random arm is the bad one half the time: 0.8 * 0.5 per trial.
    assert abs(a["random"].regret.mean() - 0.4 * 20) < 2.0
    assert a["thompson"].regret.mean() < a["random"].regret.mean()
