"""Harlow with abstract objects: the task's rules, its first observation, its players, play mode."""

import io
import re

import numpy as np
import pytest
import torch

from dist_vpg import config, evaluation, noise, play
from dist_vpg.agent import Agent
from dist_vpg.checkpoint import load_agent
from dist_vpg.rollout import act, input_size
from dist_vpg.tasks import Harlow, make_task
from dist_vpg.tasks import settings as task_settings


def _draws(task, episodes, seed=2):
    return noise.draw(
        seed, noise.VALID, 0, np.arange(episodes), task.trials, task.episode_draws, task.trial_draws
    )


def _reference(pool, u_episode, u_trials, actions):
    """One episode written out plainly: what it shows before each choice, and each choice's reward."""
    n = len(pool)
    first = min(int(u_episode[0] * n), n - 1)
    second = min(int(u_episode[1] * (n - 1)), n - 2)
    second += second >= first
    left = u_episode[2] < 0.5
    shown, rewards = [], []
    for u, a in zip(u_trials, actions):
        pair = (pool[first], pool[second]) if left else (pool[second], pool[first])
        shown.append(np.concatenate(pair))
        rewards.append(1.0 if (a == 0) == left else 0.0)
        left = u[0] < 0.5
    return np.array(shown), rewards


@pytest.mark.parametrize("fixation", [False, True])
def test_harlow_follows_the_rules_of_a_plain_loop(fixation):
    cfg = task_settings("harlow", trials=6, objects=50, features=3, fixation=fixation)
    task = make_task(cfg)
    steps = 12 if fixation else 6
    assert (task.num_actions, task.obs_size, task.trials, task.choices) == (2, 6, steps, 6)
    assert task.choice_steps == (list(range(1, 12, 2)) if fixation else list(range(6)))
    pool = task.pool.numpy()
    draws = _draws(task, 300)
    actions = torch.randint(0, 2, (steps, 300), generator=torch.Generator().manual_seed(0))
    state = task.reset(draws.episode)
    shown, rewards, regrets = [task.first_obs(state)], [], []
    for t in range(steps):
        step = task.step(state, actions[t], draws.trial[t])
        state = step.state
        shown.append(step.obs)
        rewards.append(step.reward)
        regrets.append(step.regret)
    shown, rewards, regrets = torch.stack(shown[:-1], 1), torch.stack(rewards, 1), torch.stack(regrets, 1)
    choices = task.choice_steps
    fixations = [t for t in range(steps) if t not in choices]
    # fixation steps show nothing and pay nothing, whatever the action
    assert torch.all(shown[:, fixations] == 0) and torch.all(rewards[:, fixations] == 0)
    assert torch.all(regrets[:, fixations] == 0)
    assert torch.equal(regrets[:, choices], 1.0 - rewards[:, choices])
    for b in range(300):
        want_shown, want_rewards = _reference(
            pool, draws.episode[b].tolist(), draws.trial[choices, b].tolist(), actions[choices, b].tolist()
        )
        np.testing.assert_array_equal(shown[b, choices].numpy(), want_shown)
        assert rewards[b, choices].tolist() == want_rewards
    # two different objects every episode, the sides at random
    left, right = shown[:, choices[0], :3], shown[:, choices[0], 3:]
    assert not (left == right).all(1).any()
    rewarded = task.reset(draws.episode).rewarded.unsqueeze(1)
    on_left = (shown[:, choices, :3] == rewarded).all(2)  # [300, 6]
    assert 0.4 < on_left.float().mean() < 0.6
    assert torch.equal(task.rewarded_left(draws.episode, draws.trial), on_left.T)


def test_the_pool_is_part_of_the_task_and_every_object_is_drawn():
    a, b = Harlow(objects=20), Harlow(objects=20)
    assert torch.equal(a.pool, b.pool) and a.pool.min() >= 0 and a.pool.max() < 1
    drawn = a.reset(_draws(a, 2000).episode)
    ids = {tuple(x) for x in torch.cat([drawn.rewarded, drawn.other]).tolist()}
    assert len(ids) == 20


def test_the_agent_sees_the_objects_before_its_first_choice():
    task = Harlow(fixation=False)  # with fixation, the first step shows nothing
    agent = Agent(input_size(task, True), 2, 8)
    draws = _draws(task, 16)
    with torch.inference_mode():
        played = act(agent, task, draws, True, with_values=False)
    first = played.inputs[0]
    assert torch.equal(first[:, : task.obs_size], task.sides(task.reset(draws.episode)))
    assert torch.all(first[:, task.obs_size :] == 0)  # no previous action, reward, trial index 0


@pytest.mark.parametrize("fixation", [False, True])
def test_harlow_players_score_their_exact_figures(fixation):
    """Optimal: a guess, then right: 0.5 regret. By side and random: right half the time after trial 1."""
    overrides = ["task.name=harlow", "task.trials=6", f"task.fixation={fixation}"]
    task = make_task(config.from_dict({}, overrides).task)
    found = evaluation.evaluate_baselines(task, 4000, 5)
    regret = {name: r.regret.mean() for name, r in found.items()}
    assert regret["optimal"] == pytest.approx(0.5, abs=0.03)
    assert (found["optimal"].regrets[task.choice_steps[1] :] == 0).all()
    assert regret["random"] == pytest.approx(3.0, abs=0.1)
    assert regret["by_side"] == pytest.approx(3.0, abs=0.1)
    report = task.report(found, 5, noise.EVAL, None)["p_correct_by_side"]
    # by side: right on trial 2 exactly when the objects kept their sides
    assert report["by_side"]["same_side"][1] == 1.0 and report["by_side"]["swapped"][1] == 0.0
    assert report["optimal"]["swapped"][1:] == [1.0] * 5


def test_play_shows_the_objects_and_reveals_the_one_that_paid(tmp_path):
    from tests.test_evaluate import make_checkpoint

    path = make_checkpoint(
        tmp_path / "run", ["task.name=harlow", "task.trials=6", "agent.hidden=8", "train.rollout=twopass"]
    )
    out = io.StringIO()
    result = play.play(path, 3, io.StringIO("1\n" * 6), out)
    text = out.getvalue()
    assert result["trials"] == 6 and text.count("left: ") == 6
    revealed = re.search(
        r"Revealed: ([A-Z]{4}) paid every time, wherever it stood; ([A-Z]{4}) never did", text
    )
    assert revealed and revealed[1] != revealed[2]
    # both were shown on the first trial, one on each side
    assert re.search(rf"left: ({revealed[1]}|{revealed[2]})   right: ({revealed[1]}|{revealed[2]})", text)


def test_play_skips_fixation_steps_and_counts_trials(tmp_path):
    from tests.test_evaluate import make_checkpoint

    overrides = ["task.name=harlow", "task.trials=6", "task.fixation=true", "agent.hidden=8"]
    path = make_checkpoint(tmp_path / "run", overrides + ["train.rollout=twopass"])
    out = io.StringIO()
    result = play.play(path, 3, io.StringIO("2\n" * 6), out)
    text = out.getvalue()
    assert text.startswith("harlow: 6 trials") and "trial 6/6" in text and "trial 7" not in text
    assert result["trials"] == 6 and text.count("left: ") == 6


def test_the_pretrained_agent_follows_the_object_that_paid_on_either_side():
    """The paper's point on the shipped agent, weights frozen: after one trial it chooses the object
    that paid, whether or not the objects swapped sides (a learner of sides is right half the time)."""
    agent, cfg = load_agent(play.DEFAULT_CHECKPOINT["harlow"])
    task = make_task(cfg.task)
    assert task.fixation and task.choices == 6
    result = evaluation.evaluate_agent(agent, task, cfg.task.trial_input, 1000, 7)
    by_side = task.report({"agent": result}, 7, noise.EVAL, None)["p_correct_by_side"]["agent"]
    assert by_side["same_side"][0] == pytest.approx(0.5, abs=0.06)  # trial 1: a guess
    for kind in ("same_side", "swapped"):
        assert min(by_side[kind][1:]) > 0.95, kind
    assert result.regret.mean() < 0.6  # optimal: 0.5
