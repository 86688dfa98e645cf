"""Two-step analysis on synthetic choices whose stay rates and logistic coefficients are known."""

import numpy as np
import pytest

from dist_vpg.tasks.two_step import stay


def synthetic(p_stay: dict, episodes=400, trials=100, seed=0):
    rng = np.random.default_rng(seed)
    rewards = (rng.random((trials, episodes)) < 0.5).astype(np.float32)
    common = rng.random((trials - 1, episodes)) < 0.7
    actions = np.zeros((trials, episodes), dtype=np.int8)
    actions[0] = rng.integers(0, 2, episodes)
    for t in range(trials - 1):
        kind = np.where(rewards[t] > 0, "rewarded_", "unrewarded_").astype(object) + np.where(
            common[t], "common", "rare"
        )
        p = np.array([p_stay[k] for k in kind])
        stays = rng.random(episodes) < p
        actions[t + 1] = np.where(stays, actions[t], 1 - actions[t])
    return actions, rewards, common


def test_stay_probabilities_recover_the_rates():
    want = {"rewarded_common": 0.95, "rewarded_rare": 0.3, "unrewarded_common": 0.4, "unrewarded_rare": 0.9}
    found = stay.stay_probabilities(*synthetic(want))
    for kind, p in want.items():
        assert abs(found[kind]["p"] - p) < 4 * found[kind]["sem"], (kind, found[kind])
        assert found[kind]["episodes"] == 400


def test_logistic_regression_recovers_the_coefficients():
    beta = {"intercept": 0.5, "reward": 0.8, "transition": -0.3, "interaction": 1.2}

    def p(r, c):
        z = beta["intercept"] + beta["reward"] * r + beta["transition"] * c + beta["interaction"] * r * c
        return 1 / (1 + np.exp(-z))

    rates = {
        "rewarded_common": p(1, 1),
        "rewarded_rare": p(1, -1),
        "unrewarded_common": p(-1, 1),
        "unrewarded_rare": p(-1, -1),
    }
    found = stay.model_based_index(*synthetic(rates, seed=1))
    for name, b in beta.items():
        assert abs(found["coefficients"][name] - b) < 4 * found["se"][name], (name, found)
    assert found["index"] == found["coefficients"]["interaction"]
    assert found["pairs"] == 400 * 99


def test_model_free_choices_have_no_interaction():
    rates = {"rewarded_common": 0.9, "rewarded_rare": 0.9, "unrewarded_common": 0.4, "unrewarded_rare": 0.4}
    found = stay.model_based_index(*synthetic(rates, seed=2))
    assert abs(found["index"]) < 4 * found["se"]["interaction"]
    assert found["coefficients"]["reward"] > 10 * found["se"]["reward"]
    assert found["index"] == pytest.approx(0, abs=0.1)
