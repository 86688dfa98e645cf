"""Meta-RL tasks that step a batch of B episodes in lockstep: one call advances every episode.

A task holds no randomness of its own: `reset` and `step` turn uniforms drawn elsewhere
(dist_vpg.noise) into task parameters, rewards and transitions, so an episode is reproducible
from its coordinates alone. Tasks know nothing of agents or of torch.distributed.

Each task is one unit, a module or a subpackage here: its settings (a dataclass of its task.* keys
and their defaults), its torch step, its players and exact optimum, its report and figures, how
`dist_vpg.play` shows it, its Gymnasium ids and its native step (`native_state`). `base`
holds the protocol (`Task`) and the defaults every unit starts from (`TaskUnit`). `TASKS` below maps
names to units; evaluation, play, the Gymnasium adapter, the native rollout and training ask it.

A new task: copy a neighbour, and add one line to TASKS. A task outside the package needs no edit
here: `task.name=package.module:Class` imports it, or `register("name", Class)` adds it in code.
"""

from __future__ import annotations

import dataclasses
import importlib

from dist_vpg.settings import ConfigError, TaskSettings
from dist_vpg.tasks.bandit import DEPENDENT_SETS, Bandit, BanditState
from dist_vpg.tasks.base import Step, Task, TaskUnit
from dist_vpg.tasks.harlow import Harlow, HarlowState
from dist_vpg.tasks.informative import InformativeArms, InformativeState
from dist_vpg.tasks.restless import RestlessBandit, RestlessState
from dist_vpg.tasks.two_step import TwoStep, TwoStepState

__all__ = [
    "DEPENDENT_SETS",
    "DEFAULT",
    "TASKS",
    "Bandit",
    "BanditState",
    "Harlow",
    "HarlowState",
    "InformativeArms",
    "InformativeState",
    "RestlessBandit",
    "RestlessState",
    "Step",
    "Task",
    "TaskUnit",
    "TwoStep",
    "TwoStepState",
    "lookup",
    "make_task",
    "register",
    "settings",
]

DEFAULT = "bandit"  # the task of a configuration that names none
TASKS: dict[str, type[TaskUnit]] = {
    "bandit": Bandit,
    "two_step": TwoStep,
    "informative_arms": InformativeArms,
    "restless": RestlessBandit,
    "harlow": Harlow,
}


def register(name: str, unit: type[TaskUnit]) -> None:
    """Make `unit` a task that task.name=`name` trains, evaluates and plays."""
    _check_unit(unit, name)
    TASKS[name] = unit


def lookup(name: str) -> type[TaskUnit]:
    """The unit of task.name: a registered name, or module:Class, imported."""
    if name in TASKS:
        return TASKS[name]
    module, sep, attribute = name.partition(":")
    if not sep:
        names = ", ".join(TASKS)
        raise ConfigError(
            f"task.name: must be one of {names}, or module:Class for a task of your own (got {name!r})"
        )
    try:
        unit = getattr(importlib.import_module(module), attribute)
    except ImportError as e:
        raise ConfigError(f"task.name: cannot import {module!r} ({e})") from None
    except AttributeError:
        raise ConfigError(f"task.name: {module!r} has no {attribute!r}") from None
    _check_unit(unit, name)
    return unit


def _check_unit(unit, name: str) -> None:
    if not (isinstance(unit, type) and issubclass(unit, TaskUnit)):
        raise ConfigError(f"task.name: {name} is not a task (a subclass of dist_vpg.tasks.TaskUnit)")
    if not (dataclasses.is_dataclass(unit.Settings) and issubclass(unit.Settings, TaskSettings)):
        raise ConfigError(
            f"task.name: {name}.Settings must be a dataclass subclassing dist_vpg.settings.TaskSettings"
        )


def settings(name: str = "bandit", **keys) -> TaskSettings:
    """The settings of task `name` with these keys set and its defaults for the rest, unchecked."""
    return lookup(name).Settings(name=name, **keys)


def make_task(settings: TaskSettings) -> Task:
    return lookup(settings.name).from_settings(settings)
