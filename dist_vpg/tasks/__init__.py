"""Meta-RL tasks that step a batch of B episodes in lockstep: one call advances every episode.

A task holds no randomness of its own: `reset` and `step` turn uniforms drawn elsewhere
(dist_vpg.noise) into task parameters, rewards and transitions, so an episode is reproducible
from its coordinates alone. Tasks know nothing of agents or of torch.distributed.

One module per task (`bandit`, `two_step`, `informative`, `restless`, `harlow`); `base` holds the
protocol every task meets. A new task: copy a neighbour, add its name to config.TASKS (and its keys to
config.TaskConfig), one line to `make_task`, and its baselines to dist_vpg.evaluate.
"""

from __future__ import annotations

from dist_vpg.config import TaskConfig
from dist_vpg.tasks.bandit import DEPENDENT_SETS, Bandit, BanditState
from dist_vpg.tasks.base import StartsBlank, Step, Task
from dist_vpg.tasks.harlow import Harlow, HarlowState
from dist_vpg.tasks.informative import InformativeArms, InformativeState
from dist_vpg.tasks.restless import RestlessBandit, RestlessState
from dist_vpg.tasks.two_step import TwoStep, TwoStepState

__all__ = [
    "DEPENDENT_SETS",
    "Bandit",
    "BanditState",
    "Harlow",
    "HarlowState",
    "InformativeArms",
    "InformativeState",
    "RestlessBandit",
    "RestlessState",
    "StartsBlank",
    "Step",
    "Task",
    "TwoStep",
    "TwoStepState",
    "make_task",
]


def make_task(cfg: TaskConfig) -> Task:
    if cfg.name == "bandit":
        return Bandit(cfg.arms, cfg.distribution, cfg.trials)
    if cfg.name == "two_step":
        return TwoStep(cfg.trials, cfg.common_prob, cfg.reward_high, cfg.reward_low, cfg.swap_prob)
    if cfg.name == "informative_arms":
        return InformativeArms(cfg.arms, cfg.trials, cfg.informative_scale)
    if cfg.name == "restless":
        return RestlessBandit(cfg.trials, cfg.drift_low, cfg.drift_high, cfg.volatile_share)
    if cfg.name == "harlow":
        return Harlow(cfg.trials, cfg.objects, cfg.features, cfg.fixation)
    raise ValueError(f"unknown task {cfg.name!r}")
