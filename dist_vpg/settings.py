"""What a configuration is made of below the tasks: the one-line `ConfigError`, the checks that
raise it, and `TaskSettings`, the settings every task has, which each task's own settings extend.

dist_vpg.config builds the whole configuration on top of this module; the tasks (dist_vpg.tasks)
declare their settings with it. Neither the tasks nor this module know of the other sections.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
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


@dataclass(frozen=True)
class Described:
    """One setting as --help and the documentation show it."""

    key: str  # dotted, e.g. train.lr
    type: str  # int, float, bool, str or any
    default: object
    meaning: str  # the first sentence of the comment beside (or above) its definition


def describe(cls: type, prefix: str = "") -> list[Described]:
    """Every field of the dataclass `cls` (nested dataclasses under their own prefix), with its type,
    default and the comment written beside it in the source: the definitions are the documentation,
    so the two cannot drift apart."""
    comments = _field_comments(cls)
    found = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            found += describe(type(default), f"{prefix}{f.name}.")
            continue
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        found.append(Described(f"{prefix}{f.name}", kind.lower(), default, comments.get(f.name, "")))
    return found


def _field_comments(cls: type) -> dict[str, str]:
    """name -> the first sentence of the comment trailing each field's line, else of the comment
    lines just above it, through every class of the dataclass's hierarchy (the nearest wins)."""
    found: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        try:
            lines, first = inspect.getsourcelines(klass)
        except (OSError, TypeError):  # defined where there is no source: no comments
            continue
        tree = ast.parse(textwrap.dedent("".join(lines)))
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                text = _comment_at(lines, node.lineno - 1)
                if text:
                    found[node.target.id] = text
    return found


def _comment_at(lines: list[str], row: int) -> str:
    trailing = lines[row].partition("  # ")[2].strip()
    above = []
    k = row - 1
    while k >= 0 and lines[k].strip().startswith("#"):
        above.insert(0, lines[k].strip().lstrip("#").strip())
        k -= 1
    if trailing:  # one line already
        return trailing
    return " ".join(above).split(". ")[0].strip().rstrip(".")
