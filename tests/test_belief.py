"""The belief read-out: ridge R^2 against synthetic truths, each task's posterior against a plain
loop, and a trained agent's state holding its posterior far better than an untrained one's."""

import json

import numpy as np
import pytest
import torch

from dist_vpg import belief, checkpoint, evaluate, noise
from dist_vpg.agent import Agent
from dist_vpg.rollout import act, input_size
from dist_vpg.tasks import DEPENDENT_SETS, Bandit, TwoStep, make_task
from dist_vpg.tasks.bandit import bayes
from dist_vpg.tasks.two_step.bayes import TwoStepBayes


def test_ridge_r2_is_one_for_a_linear_truth_and_nothing_for_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4000, 10))
    linear = x @ rng.normal(size=(10, 2)) + 0.01 * rng.normal(size=(3, 4000, 2))
    unrelated = rng.normal(size=(3, 4000, 2))
    fit = np.arange(4000) % 2 == 1
    assert np.all(belief.ridge_r2(x, linear, fit) > 0.99)
    assert np.all(np.abs(belief.ridge_r2(x, unrelated, fit)) < 0.02)
    constant = np.ones((3, 4000, 1))
    assert np.all(np.isnan(belief.ridge_r2(x, constant, fit)))  # nothing varies: nothing to score


def _played(task, episodes=64, seed=3):
    draws = noise.draw(
        seed, noise.EVAL, 0, np.arange(episodes), task.trials, task.episode_draws, task.trial_draws
    )
    torch.manual_seed(0)
    agent = Agent(input_size(task, True), task.num_actions, 8)
    with torch.inference_mode():
        r = act(agent, task, draws, True, with_values=False)
    return draws, r


@pytest.mark.parametrize("distribution", ["independent", "dependent", "hard"])
def test_bandit_posteriors_against_a_plain_loop(distribution):
    task = Bandit(2, distribution, 12)
    draws, r = _played(task)
    found = task.beliefs(task.reset(draws.episode), r.inputs, r.actions, r.rewards)
    for b in range(5):
        s, n = [0, 0], [0, 0]
        for t in range(task.trials):
            assert found["pulls"][t, b].tolist() == n
            if distribution == "independent":
                want = [(s[k] + 1) / (n[k] + 2) for k in range(2)]
            else:
                a = s[0] + (n[1] - s[1])
                p0 = float(bayes.predictive(np.array(a), np.array(t - a), DEPENDENT_SETS[distribution]))
                want = [p0, 1 - p0]
            assert found["posterior_mean"][t, b].tolist() == pytest.approx(want)
            arm = int(r.actions[t, b])
            s[arm] += int(r.rewards[t, b])
            n[arm] += 1


def test_two_step_posterior_against_a_plain_loop():
    task = TwoStep(trials=15)
    draws, r = _played(task)
    found = task.beliefs(task.reset(draws.episode), r.inputs, r.actions, r.rewards)["good_state"]
    update = TwoStepBayes(task).update
    for b in range(5):
        p = torch.tensor([0.5], dtype=torch.float64)
        for t in range(task.trials):
            assert found[t, b].tolist() == pytest.approx([p.item(), 1 - p.item()])
            reached = r.inputs[t + 1, b, :2].argmax().view(1) if t + 1 < task.trials else None
            if reached is not None:
                p = update(p, reached, r.rewards[t, b].view(1))


@pytest.mark.parametrize("name", ["bandit_independent", "two_step"])
def test_a_trained_agent_holds_its_posterior_better_than_an_untrained_one(name):
    agent, cfg = checkpoint.load_agent(f"pretrained/{name}.pt")
    task = make_task(cfg.task)
    draws = noise.draw(5, noise.EVAL, 0, np.arange(800), task.trials, task.episode_draws, task.trial_draws)
    found = belief.decoding(agent, task, draws, cfg.task.trial_input)
    assert found["episodes_fit"] == found["episodes_scored"] == 400
    for kind, r2 in found["agent"].items():
        trained = np.nanmean(np.array(r2[10:], dtype=float))
        floor = np.nanmean(np.array(found["untrained"][kind][10:], dtype=float))
        assert trained > floor + 0.05 and trained > 0.8, (kind, trained, floor)


def test_evaluate_reports_the_decoding_and_draws_it(tmp_path, capsys):
    assert (
        evaluate.main(
            ["--checkpoint", "pretrained/bandit_independent.pt", "--episodes", "300", "--out", str(tmp_path)]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    decoded = metrics["belief_decoding"]
    assert set(decoded["agent"]) == {"posterior_mean", "pulls"} and len(decoded["agent"]["pulls"]) == 100
    assert (tmp_path / "belief_decoding.png").stat().st_size > 0
