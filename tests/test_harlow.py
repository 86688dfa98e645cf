"""Harlow with abstract objects: the task's rules, its first observation, its players, play mode."""

import io
import re

import numpy as np
import pytest
import torch

from dist_vpg import config, evaluate, noise, play
from dist_vpg.agent import Agent
from dist_vpg.rollout import act, input_size
from dist_vpg.tasks import Harlow, make_task


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


def test_harlow_follows_the_rules_of_a_plain_loop():
    task = make_task(config.TaskConfig(name="harlow", trials=6, objects=50, features=3))
    assert (task.num_actions, task.obs_size, task.trials) == (2, 6, 6)
    pool = task.pool.numpy()
    draws = _draws(task, 300)
    actions = torch.randint(0, 2, (6, 300), generator=torch.Generator().manual_seed(0))
    state = task.reset(draws.episode)
    shown, rewards = [task.first_obs(state)], []
    for t in range(6):
        step = task.step(state, actions[t], draws.trial[t])
        state = step.state
        shown.append(step.obs)
        rewards.append(step.reward)
        assert torch.equal(step.regret, 1.0 - step.reward)
    shown, rewards = torch.stack(shown[:-1], 1), torch.stack(rewards, 1)  # [300, 6, 6], [300, 6]
    for b in range(300):
        want_shown, want_rewards = _reference(
            pool, draws.episode[b].tolist(), draws.trial[:, b].tolist(), actions[:, b].tolist()
        )
        np.testing.assert_array_equal(shown[b].numpy(), want_shown)
        assert rewards[b].tolist() == want_rewards
    # two different objects every episode, the sides at random
    left, right = shown[:, 0, :3], shown[:, 0, 3:]
    assert not (left == right).all(1).any()
    assert (
        0.4 < (shown[:, :, :3] == task.reset(draws.episode).rewarded.unsqueeze(1)).all(2).float().mean() < 0.6
    )


def test_the_pool_is_part_of_the_task_and_every_object_is_drawn():
    a, b = Harlow(objects=20), Harlow(objects=20)
    assert torch.equal(a.pool, b.pool) and a.pool.min() >= 0 and a.pool.max() < 1
    drawn = a.reset(_draws(a, 2000).episode)
    ids = {tuple(x) for x in torch.cat([drawn.rewarded, drawn.other]).tolist()}
    assert len(ids) == 20


def test_the_agent_sees_the_objects_before_its_first_choice():
    task = Harlow()
    agent = Agent(input_size(task, True), 2, 8)
    draws = _draws(task, 16)
    with torch.inference_mode():
        played = act(agent, task, draws, True, with_values=False)
    first = played.inputs[0]
    assert torch.equal(first[:, : task.obs_size], task.sides(task.reset(draws.episode)))
    assert torch.all(first[:, task.obs_size :] == 0)  # no previous action, reward, trial index 0


def test_harlow_players_score_their_exact_figures():
    """Optimal: a guess, then right: 0.5 regret. By side and random: right half the time after trial 1."""
    task = make_task(config.from_dict({}, ["task.name=harlow", "task.trials=6"]).task)
    found = evaluate.evaluate_baselines(task, 4000, 5)
    regret = {name: r.regret.mean() for name, r in found.items()}
    assert regret["optimal"] == pytest.approx(0.5, abs=0.03)
    assert (found["optimal"].regrets[1:] == 0).all()
    assert regret["random"] == pytest.approx(3.0, abs=0.1)
    assert regret["by_side"] == pytest.approx(3.0, abs=0.1)
    report = evaluate.harlow_report(found, task, 5, noise.EVAL)["p_correct_by_side"]
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
