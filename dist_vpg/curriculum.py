"""Curricula: one run that trains through stages, each the run's configuration with some task and
training keys set otherwise, the last one the task as configured.

The `curriculum` key is `task` (the default: the stages the task's unit declares, `TaskUnit.curriculum`,
or none), `none`, or a list of stages, each a mapping of

    set: {task.KEY: value, train.KEY: value, ...}   # what the stage changes (STAGE_TRAIN_KEYS)
    updates: N   or   share: 0.5                     # its length: updates, or a share of train.updates
    until_regret: 0.6                                # optional: it ends at the first periodic
                                                     # validation whose regret is at most this

The last stage has no length: it trains the rest of train.updates. A task's own stages set what the
run's configuration leaves unset (a key given in the config file or on the command line wins in every
stage); stages written in the configuration set their keys over it. `resolve` turns the key into
the list of stages the run trains through, checked: every stage is a configuration that loads (its
task the run's, its agent's inputs and actions the same), every level reachable and looked at.

A stage's lr, entropy and discount schedules run over the stage; the weights and the optimizer's
state carry over from one stage to the next, the weights' average starts afresh. Every checkpoint
holds the stage it was written in (`Position`), so a resumed run goes on inside it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dist_vpg.settings import ConfigError, require

# The training keys a stage may set: its schedules and its learning signal. The batch, the rollout,
# the optimizer and everything else are the run's.
STAGE_TRAIN_KEYS = (
    "lr", "lr_final", "gamma", "gamma_final", "gae_lambda", "beta_v", "value_scale", "beta_e",
    "beta_e_final", "max_grad_norm", "signal", "average",
)  # fmt: skip
STAGE_KEYS = ("set", "updates", "share", "until_regret")
# what the resolved form (--show-config, checkpoints) records beside them, read back when given
RESOLVED_KEYS = (*STAGE_KEYS, "as_configured")


@dataclass(frozen=True)
class Stage:
    settings: dict[str, Any]  # dotted key -> value, over the run's configuration
    updates: int | None  # its most updates; None for the last stage: the rest of the run
    until_regret: float | None = None  # ends at the first validation at or below this regret
    as_configured: tuple[str, ...] = ()  # keys a task's own stage would set that the config gives

    def describe(self) -> str:
        changed = " ".join(f"{k}={v}" for k, v in self.settings.items()) or "the configuration as given"
        if self.as_configured:
            changed += f" (the task's stage would also set {', '.join(self.as_configured)}: as configured)"
        level = "" if self.until_regret is None else f", or until validation regret <= {self.until_regret:g}"
        length = "the rest of the run" if self.updates is None else f"up to {self.updates} updates{level}"
        return f"{changed}; {length}"


@dataclass
class Position:
    """Where a run is in its curriculum: the stage (from 0), the update it began at, and how each
    stage before it ended ({"stage", "start", "end", "ended_by"}), as checkpoints keep it."""

    index: int = 0
    start: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)

    def next(self, done: int, ended_by: str) -> Position:
        """The position of the stage after this one, which ended after update `done` (`ended_by`:
        "level" or "updates")."""
        ended = {"stage": self.index + 1, "start": self.start, "end": done, "ended_by": ended_by}
        return Position(self.index + 1, done, [*self.history, ended])

    def state_dict(self) -> dict:
        return {"index": self.index, "start": self.start, "history": list(self.history)}

    @classmethod
    def from_state(cls, state: dict | None) -> Position:
        """A checkpoint's position; a checkpoint without one was written in a run's only stage."""
        if not state:
            return cls()
        return cls(int(state["index"]), int(state["start"]), list(state.get("history", [])))


def stages(curriculum: list) -> list[Stage]:
    """The resolved curriculum of a configuration (cfg.curriculum) as stages; [] when it has none."""
    return [
        Stage(dict(s["set"]), s.get("updates"), s.get("until_regret"), tuple(s.get("as_configured") or ()))
        for s in curriculum
    ]


def resolve(
    value: Any, declared: tuple, explicit: set[str], updates: int, eval_every: int, task_name: str
) -> list[dict[str, Any]]:
    """The stages a run trains through, from the `curriculum` key's `value`: `declared` is the task
    unit's own (used for "task"), `explicit` the dotted keys the configuration gives (which a task's
    own stages leave alone), `updates` the run's train.updates. Checks the stages' form and lengths
    (config._check_stages checks what they set). A task's own level that no validation falls within
    its stage (a short run, or eval.every=0) is dropped: the stage runs its length."""
    if value == "none" or (isinstance(value, (list, tuple)) and not value):
        return []  # [] is a resolved "none", as checkpoints keep it
    if value == "task":
        if not declared:
            return []
        raw, source = list(declared), f"the {task_name} task's curriculum"
    elif isinstance(value, (list, tuple)):
        raw, source = list(value), "a curriculum"
    else:
        raise ConfigError(f"curriculum: must be task, none or a list of stages (got {value!r})")
    require(len(raw) >= 2, "curriculum", f"{source} needs at least two stages (got {len(raw)})")
    resolved, used = [], 0
    for i, stage in enumerate(raw):
        where = f"curriculum stage {i + 1}"
        require(isinstance(stage, dict), where, f"must be a mapping of {', '.join(STAGE_KEYS)}")
        unknown = sorted(set(stage) - set(RESOLVED_KEYS))
        require(
            not unknown,
            f"{where}.{unknown[0] if unknown else ''}",
            f"no such key; a stage has {', '.join(STAGE_KEYS)}",
        )
        settings = flatten(stage.get("set") or {}, where)
        kept = sorted(k for k in settings if k in explicit) if value == "task" else stage.get("as_configured")
        settings = {k: v for k, v in settings.items() if k not in (kept or ())}
        last = i == len(raw) - 1
        length = _length(stage, where, updates, last)
        level = stage.get("until_regret")
        if value == "task" and not (length and 0 < eval_every <= length):
            level = None
        if level is not None:
            require(
                not last, f"{where}.until_regret", "the last stage trains to the run's end, with no level"
            )
            require(
                isinstance(level, (int, float)) and not isinstance(level, bool) and level >= 0,
                f"{where}.until_regret",
                f"must be a regret >= 0, a level validation can reach (got {level!r})",
            )
        level = None if level is None else float(level)
        resolved.append({"set": settings, "updates": length, "until_regret": level})
        if kept:
            resolved[-1]["as_configured"] = list(kept)
        used += length or 0
    require(
        used < updates,
        "curriculum",
        f"its stages before the last take {used} of the run's {updates} updates (train.updates), leaving "
        "none for the last",
    )
    return resolved


def _length(stage: dict, where: str, updates: int, last: bool) -> int | None:
    given = [k for k in ("updates", "share") if stage.get(k) is not None]
    if last:
        require(
            not given,
            f"{where}.{given[0] if given else ''}",
            "the last stage trains the rest of train.updates: give it no length",
        )
        return None
    require(len(given) == 1, where, "give it a length: updates (a number) or share (of train.updates)")
    if given[0] == "updates":
        n = stage["updates"]
        ok = isinstance(n, int) and not isinstance(n, bool) and n >= 1
        require(ok, f"{where}.updates", f"must be a whole number >= 1 (got {n!r})")
        return n
    share = stage["share"]
    require(
        isinstance(share, (int, float)) and not isinstance(share, bool) and 0 < share < 1,
        f"{where}.share",
        f"must lie in (0, 1), a share of train.updates (got {share!r})",
    )
    return max(1, int(share * updates))


def flatten(settings: Any, where: str) -> dict[str, Any]:
    """{"task": {"fixation": False}, "train.lr": 0.003} -> {"task.fixation": False, "train.lr": 0.003},
    each key a task key or one of STAGE_TRAIN_KEYS."""
    require(isinstance(settings, dict), f"{where}.set", f"must be a mapping of keys (got {settings!r})")
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(flatten({f"{key}.{k}": v for k, v in value.items()}, where))
            continue
        section, _, name = str(key).partition(".")
        if section == "task":
            require(
                name not in ("name", "trial_input", ""),
                f"{where}.set.{key}",
                "a stage trains the run's task, with the run's inputs",
            )
        else:
            require(
                section == "train" and name in STAGE_TRAIN_KEYS,
                f"{where}.set.{key}",
                f"a stage sets task.* keys and train.{{{', '.join(STAGE_TRAIN_KEYS)}}}",
            )
        flat[str(key)] = value
    return flat
