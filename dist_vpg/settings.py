"""What a configuration is made of below the tasks: the one-line `ConfigError`, the checks that
raise it, and `TaskSettings`, the settings every task has, which each task's own settings extend.

dist_vpg.config builds the whole configuration on top of this module; the tasks (dist_vpg.tasks)
declare their settings with it. Neither the tasks nor this module know of the other sections.
"""

from __future__ import annotations

import dataclasses
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


def setting(default, help: str):  # noqa: A002 - argparse's word for it
    """A field of a settings dataclass: its default and the one line --help and the docs give as its
    meaning (the field's metadata, read by `describe`)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TaskSettings:
    """The task.* keys every task has. A task's own settings subclass this, give `name` and `trials`
    their own defaults, add their keys and check their values in `check`."""

    name: str = setting("", "the registry's name of the task, or module:Class for a task from outside")
    trials: int = setting(100, "choices an episode")
    trial_input: bool = setting(True, "feed the normalized trial index t/T to the agent")

    def check(self) -> None:
        """Refuse values no run of this task can use (ConfigError naming the task.* key)."""
        require(self.trials >= 1, "task.trials", "must be >= 1")


@dataclass(frozen=True)
class Described:
    """One setting as --help and the documentation show it."""

    key: str  # dotted, e.g. train.lr
    type: str  # int, float, bool, str or any
    default: object
    meaning: str  # what its definition says it is (`setting`)


def describe(cls: type, prefix: str = "") -> list[Described]:
    """Every field of the dataclass `cls` (nested dataclasses under their own prefix), with its type,
    default and the meaning its definition gives it (`setting`): the definitions are the
    documentation, so the two cannot drift apart."""
    helps = _helps(cls)
    found = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            found += describe(type(default), f"{prefix}{f.name}.")
            continue
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        found.append(Described(f"{prefix}{f.name}", kind.lower(), default, helps.get(f.name, "")))
    return found


def _helps(cls: type) -> dict[str, str]:
    """name -> the meaning of each field, from the nearest class of the dataclass's hierarchy that
    gives one (a task's settings may give `name` a new default and keep TaskSettings' meaning)."""
    found: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        own = klass.__dict__.get("__dataclass_fields__", {})
        found |= {name: f.metadata["help"] for name, f in own.items() if "help" in f.metadata}
    return found
