"""The Gymnasium adapter: the checker passes, and the envs play dist_vpg's own episodes."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from dist_vpg import config, noise
from dist_vpg.agent import Agent
from dist_vpg.gym_adapter import IDS, TaskEnv, TaskVectorEnv
from dist_vpg.rollout import act, input_size
from dist_vpg.tasks import make_task

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("env_id", list(IDS))
def test_gymnasium_checker_passes_on_every_registered_task(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped)
    assert env.spec.vector_entry_point == "dist_vpg.gym_adapter:TaskVectorEnv"
    envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, *env.observation_space.shape) and obs in envs.observation_space


def test_task_settings_pass_through_and_bad_ones_are_refused_by_key():
    env = gym.make("dist_vpg/Bandit-v0", arms=5, trials=10)
    assert env.action_space.n == 5 and env.observation_space.shape == (5 + 1 + 1,)
    check_env(env.unwrapped)
    with pytest.raises(config.ConfigError, match="^task.trials"):
        gym.make("dist_vpg/Bandit-v0", trials=0)
    with pytest.raises(config.ConfigError, match="^task.distribution"):
        gym.make("dist_vpg/DependentBandit-v0", arms=3)


@pytest.mark.parametrize("settings", [{"name": "bandit"}, {"name": "two_step", "trials": 30}])
def test_vector_env_plays_the_episodes_a_rollout_plays(settings):
    """Fed a rollout's actions, the env shows the agent the rollout's inputs and pays its rewards."""
    batch, seed = 6, 11
    cfg = config.from_dict({"task": settings})
    task = make_task(cfg.task)
    draws = noise.draw(
        seed, noise.TRAIN, 0, np.arange(batch), task.trials, task.episode_draws, task.trial_draws
    )
    torch.manual_seed(0)
    agent = Agent(input_size(task, True), task.num_actions, 8)
    torch.nn.init.normal_(agent.policy.weight)  # a policy that is not uniform
    with torch.no_grad():
        played = act(agent, task, draws, True, with_values=False)
    envs = TaskVectorEnv(batch, **settings)
    obs, _ = envs.reset(seed=seed)
    for t in range(task.trials):
        np.testing.assert_array_equal(obs, played.inputs[t].numpy())
        obs, reward, terminated, truncated, info = envs.step(played.actions[t].numpy())
        np.testing.assert_array_equal(reward, played.rewards[t].numpy())
        np.testing.assert_allclose(info["regret"], played.regrets[t].numpy(), rtol=1e-6)
        assert terminated.all() == (t == task.trials - 1) and not truncated.any()
    # next-step autoreset: zeros, no reward, and the next episodes of the seed
    obs, reward, terminated, _, _ = envs.step(np.zeros(batch, dtype=np.int64))
    assert not obs.any() and not reward.any() and not terminated.any()
    after = noise.draw(
        seed, noise.TRAIN, 0, np.arange(batch, 2 * batch), task.trials, task.episode_draws, task.trial_draws
    )
    assert torch.equal(envs._noise.episode, after.episode)


def test_single_env_plays_the_vector_envs_episodes_one_after_another():
    vector, single = TaskVectorEnv(2, name="bandit", trials=20), TaskEnv(name="bandit", trials=20)
    vector.reset(seed=4)
    actions = np.random.default_rng(0).integers(0, 2, (20, 2))
    by_vector = [vector.step(a)[1] for a in actions]
    for episode in range(2):
        single.reset(seed=4) if episode == 0 else single.reset()
        rewards = [single.step(int(a))[1] for a in actions[:, episode]]
        assert rewards == [r[episode] for r in by_vector]


def test_bad_actions_and_steps_past_the_end_are_refused_in_one_sentence():
    envs = TaskVectorEnv(3, name="bandit", trials=2)
    with pytest.raises(ValueError, match=r"seed must lie in 0..2\*\*63 - 1, not -1"):
        envs.reset(seed=-1)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="actions must be 3 integers"):
        envs.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="actions must be 3 integers"):
        envs.step(np.array([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"actions must lie in 0..1, not \[0, 2, 1\]"):
        envs.step(np.array([0, 2, 1]))
    env = TaskEnv(name="bandit", trials=1)
    env.reset(seed=0)
    for wrong in (1.7, True, "1", [0], np.array([1])):  # never truncated to a valid-looking action
        with pytest.raises(ValueError, match="an action must be one integer"):
            env.step(wrong)
    assert env.step(np.int64(0))[2] is True
    with pytest.raises(RuntimeError, match="the episode has ended: call reset"):
        env.step(0)


@pytest.mark.slow
def test_the_example_plays_thompson_sampling_through_gymnasium():
    proc = subprocess.run(
        [sys.executable, "examples/gymnasium_thompson.py", "--episodes", "1000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    regret = float(proc.stdout.split("regret ")[1].split()[0])
    assert 2.4 < regret < 3.3  # dist_vpg's own Thompson baseline: 2.81 ± 0.02 on 20,000 episodes


def test_the_earlier_module_name_still_works_and_says_the_new_one():
    import importlib
    import sys

    from dist_vpg import gym_adapter

    sys.modules.pop("dist_vpg.envs", None)
    with pytest.warns(DeprecationWarning, match="dist_vpg.gym_adapter"):
        old = importlib.import_module("dist_vpg.envs")
    assert old.TaskEnv is gym_adapter.TaskEnv and old.IDS == gym_adapter.IDS
