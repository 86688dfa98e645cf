"""dist_vpg's tasks through Gymnasium: `TaskEnv` plays one episode at a time, `TaskVectorEnv` B
episodes in lockstep, and importing this module registers them:

    import gymnasium as gym
    import dist_vpg.gym_adapter  # registers dist_vpg/Bandit-v0, DependentBandit-v0, TwoStep-v0,
                                 # InformativeArms-v0, RestlessBandit-v0, Harlow-v0

    env = gym.make("dist_vpg/Bandit-v0")  # or gym.make("dist_vpg.gym_adapter:dist_vpg/Bandit-v0")
    envs = gym.make_vec("dist_vpg/Bandit-v0", num_envs=64, vectorization_mode="vector_entry_point")
    env = gym.make("dist_vpg/Bandit-v0", arms=5, trials=50)  # any task.* key of the task
    env = gym.make("dist_vpg/Task-v0", name="mymodule:Coin")  # any task, by its task.name

The observation is what a dist_vpg agent sees on each trial: the task's own observation, the
previous action one-hot and the previous reward (zeros on the first trial, as is the observation but
for Harlow's objects), and the trial index t/T. The reward is the reward the trial paid; an episode
terminates after its T trials (nothing is truncated); `info["regret"]` is the trial's expected regret
(the best action's expected reward minus the chosen one's), which no agent should read while acting.
Harlow-v0 opens each trial with a fixation step (task.fixation): 12 steps an episode, of which the
odd ones are the 6 choices.

Episodes come from dist_vpg.noise, as in training: `reset(seed=s)` starts at episode 0 of seed s and
every later reset moves to the next episodes, so a seed fixes every episode played after it, in one
env or B. The training loop does not come through here: it keeps its own fast path (native rollouts).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dist_vpg import config, noise, tasks
from dist_vpg.rollout import input_size


def ids() -> dict[str, dict[str, Any]]:
    """Every registered task's Gymnasium ids (TaskUnit.gym_ids) -> their task.* settings; any other
    key of the task can be passed to gymnasium.make as a keyword."""
    return {
        env_id: {"name": name, **settings}
        for name, unit in tasks.TASKS.items()
        for env_id, settings in unit.gym_ids.items()
    }


IDS = ids()  # the ids of dist_vpg's own tasks


def _task(settings: dict[str, Any]):
    """The task of these task.* settings, checked like a config (one-line errors naming the key)."""
    overrides = [f"task.{key}={value}" for key, value in settings.items()]
    cfg = config.from_dict({}, overrides)
    if not cfg.task.trial_input:
        raise config.ConfigError("task.trial_input: the Gymnasium observation always carries the trial index")
    return tasks.make_task(cfg.task)


class TaskVectorEnv(VectorEnv):
    """B episodes of one dist_vpg task in lockstep. Every episode has T trials, so all of them end
    on the same step; with next-step autoreset the step after that starts B new episodes (reward 0,
    actions ignored)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, split: int = noise.TRAIN, **task_settings: Any):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, not {num_envs}")
        self.task = _task(task_settings)
        self.num_envs, self.split = int(num_envs), split
        size = input_size(self.task, True)
        high = np.ones(size, np.float32)
        high[self.task.obs_size + self.task.num_actions] = self.task.max_reward  # the previous reward
        self.single_observation_space = spaces.Box(np.zeros(size, np.float32), high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(self.task.num_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._seed, self._next_episode = None, 0
        self._t, self._ended = 0, True

    def _observation(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor) -> np.ndarray:
        one_hot = torch.nn.functional.one_hot(action, self.task.num_actions).float()
        index = torch.full((self.num_envs, 1), self._t / self.task.trials)
        return torch.cat([obs, one_hot, reward.unsqueeze(1), index], dim=1).numpy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            if int(seed) < 0 or int(seed) >= 2**63:
                raise ValueError(f"seed must lie in 0..2**63 - 1, not {seed}")
            self._seed, self._next_episode = int(seed), 0
        elif self._seed is None:  # never seeded: a seed from fresh entropy
            self._seed = int(np.random.SeedSequence().generate_state(1)[0])
        task, ids = self.task, np.arange(self._next_episode, self._next_episode + self.num_envs)
        self._next_episode += self.num_envs
        self._noise = noise.draw(
            self._seed, self.split, 0, ids, task.trials, task.episode_draws, task.trial_draws
        )
        self._state = task.reset(self._noise.episode)
        self._t, self._ended = 0, False
        # the first trial: the task's first observation (zeros but for Harlow's objects), no action
        # or reward yet, and a trial index of 0
        obs = np.zeros((self.num_envs, *self.single_observation_space.shape), np.float32)
        obs[:, : task.obs_size] = task.first_obs(self._state).numpy()
        return obs, {}

    def step(self, actions):
        if self._ended:  # next-step autoreset: all episodes ended on the previous step
            obs, info = self.reset()
            zeros = np.zeros(self.num_envs, dtype=bool)
            return obs, np.zeros(self.num_envs, np.float64), zeros, zeros.copy(), info
        action = self._actions(actions)
        step = self.task.step(self._state, action, self._noise.trial[self._t])
        self._state, self._t = step.state, self._t + 1
        self._ended = self._t == self.task.trials
        obs = self._observation(step.obs, action, step.reward)
        terminated = np.full(self.num_envs, self._ended)
        info = {"regret": step.regret.numpy().astype(np.float64)}
        return obs, step.reward.numpy().astype(np.float64), terminated, np.zeros(self.num_envs, bool), info

    def _actions(self, actions) -> torch.Tensor:
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer):
            want = f"{self.num_envs} integers (one per episode)"
            raise ValueError(f"actions must be {want}, not {a.dtype} of shape {a.shape}")
        if a.min() < 0 or a.max() >= self.task.num_actions:
            raise ValueError(f"actions must lie in 0..{self.task.num_actions - 1}, not {a.tolist()}")
        return torch.as_tensor(a, dtype=torch.long)


class TaskEnv(gymnasium.Env):
    """One episode at a time of a dist_vpg task: TaskVectorEnv with one episode."""

    metadata = {"render_modes": []}

    def __init__(self, split: int = noise.TRAIN, **task_settings: Any):
        self._vector = TaskVectorEnv(1, split, **task_settings)
        self.task = self._vector.task
        self.observation_space = self._vector.single_observation_space
        self.action_space = self._vector.single_action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None and self._vector._seed is None:
            seed = int(self.np_random.integers(2**63 - 1))
        obs, info = self._vector.reset(seed=seed)
        return obs[0], info

    def step(self, action):
        if self._vector._ended:
            raise RuntimeError("the episode has ended: call reset() before the next step")
        a = np.asarray(action)
        if a.shape != () or not np.issubdtype(a.dtype, np.integer):  # a float or bool is not an action
            raise ValueError(f"an action must be one integer, not {a.dtype} of shape {a.shape} ({action!r})")
        obs, reward, terminated, truncated, info = self._vector.step(a.reshape(1))
        return (
            obs[0],
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            {"regret": float(info["regret"][0])},
        )


def register() -> None:
    """Register every id, of tasks registered since too (again importing this module is harmless)."""
    for env_id, settings in ids().items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                env_id,
                entry_point="dist_vpg.gym_adapter:TaskEnv",
                vector_entry_point="dist_vpg.gym_adapter:TaskVectorEnv",
                kwargs=dict(settings),
            )
    if GENERIC_ID not in gymnasium.registry:
        gymnasium.register(
            GENERIC_ID,
            entry_point="dist_vpg.gym_adapter:TaskEnv",
            vector_entry_point="dist_vpg.gym_adapter:TaskVectorEnv",
        )


GENERIC_ID = "dist_vpg/Task-v0"  # any task, named by the keyword name= (its task.name)


register()
