"""What a configuration is made of below the tasks: the one-line `ConfigError`, the checks that
raise it, and `TaskSettings`, the settings every task has, which each task's own settings extend.

dist_vpg.config builds the whole configuration on top of this module; the tasks (dist_vpg.tasks)
declare their settings with it. Neither the tasks nor this module know of the other sections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line that names the key. Characters that
    do not print (a key typed with a control character) are shown escaped, so that the line stays one."""

    def __init__(self, message: str):
        super().__init__(printable(message))


def printable(text: str) -> str:
    """`text` with every character that does not print escaped (a record separator as \\x1e)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}")


def choice(value: str, key: str, choices: Sequence[str]) -> None:
    require(value in choices, key, f"must be one of {', '.join(choices)} (got {value!r})")


def probability(settings, *keys: str) -> None:
    """Each of `keys` of the task's settings lies in [0, 1]."""
    for key in keys:
        require(0.0 <= getattr(settings, key) <= 1.0, f"task.{key}", "must lie in [0, 1]")


@dataclass(frozen=True)
class TaskSettings:
    """The task.* keys every task has. A task's own settings subclass this, give `name` and `trials`
    their own defaults, add their keys and check their values in `check`."""

    name: str = ""  # the registry's name of the task, or module:Class for a task from outside
    trials: int = 100  # choices an episode
    trial_input: bool = True  # feed the normalized trial index t/T to the agent

    def check(self) -> None:
        """Refuse values no run of this task can use (ConfigError naming the task.* key)."""
        require(self.trials >= 1, "task.trials", "must be >= 1")
