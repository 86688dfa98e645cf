"""Checkpoints: written atomically by rank 0, read back with weights_only=True.

A checkpoint is a plain dict of tensors, numbers and strings (no pickled classes), so loading one
runs no code. Writes go to a temporary file that is flushed, fsynced and renamed over: a crash
mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dist_vpg import config, files, tasks
from dist_vpg.rollout import agent_for
from dist_vpg.tasks import make_task

FORMAT = "dist_vpg/1"
KEEP = 2  # newest checkpoints kept; older ones are deleted once a newer one is complete
_NAME = re.compile(r"^checkpoint-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


# Keys added after checkpoints were already being written, with the value every run had before them.
# A checkpoint's config that lacks one was trained with that value, not with today's default.
ADDED_LATER = {
    "train": {
        "gamma_final": -1.0,
        "value_scale": False,
        "init_from": "",
        "signal": "reward",
        "episodes_per_task": 1,
        "average": 0.0,
        "mirror": False,
    },
    "sync": {"measure_wait": False},
    "agent": {"cell": "lstm", "reward_scale": 1.0},
    "task": {"informative_scale": 1.0, "fixation": False},
}

# The task section of checkpoints written before each task had its own settings: every task's keys,
# of which a task read only its own. Loading one keeps the keys of its task and drops the rest.
FLAT_TASK_KEYS = (
    "arms", "distribution", "common_prob", "reward_high", "reward_low", "swap_prob", "informative_scale",
    "drift_low", "drift_high", "volatile_share", "objects", "features", "fixation",
)  # fmt: skip


def trained_config(data: dict[str, Any], overrides: Sequence[str] = ()) -> config.Config:
    """The config a checkpoint's `config` entry was trained with, as this version reads it (the keys
    added since at the values it had, ADDED_LATER; a flat task section mapped onto its task), then
    `overrides`; checked."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    task = data.setdefault("task", {})
    own = {f.name for f in dataclasses.fields(tasks.lookup(task.get("name", config.DEFAULT_TASK)).Settings)}
    for section, keys in ADDED_LATER.items():
        stored = data.setdefault(section, {})
        for key, value in keys.items():
            if section != "task" or key in own:
                stored.setdefault(key, value)
    data["task"] = {key: value for key, value in task.items() if key in own or key not in FLAT_TASK_KEYS}
    data.setdefault("curriculum", "none")  # written before curricula: trained in one stage
    return config.from_dict(data, overrides)


def path_for(run_dir: Path, update: int) -> Path:
    return run_dir / f"checkpoint-{update:08d}.pt"


def existing(run_dir: Path) -> list[Path]:
    """Checkpoints in run_dir, oldest first."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write state (which must hold 'update') atomically; keep the KEEP newest checkpoints. A write
    that fails (a full disk) leaves the complete checkpoints as they were and raises WriteError
    naming the newest of them."""
    final = path_for(run_dir, state["update"])
    buffer = io.BytesIO()  # serialized first: a failing disk then fails in one plain write
    torch.save({"format": FORMAT, **state}, buffer)
    try:
        files.atomic_write(final, buffer.getbuffer())
        _fsync_dir(run_dir)
    except (files.WriteError, OSError) as e:
        newest = existing(run_dir)
        then = (
            f"the newest complete checkpoint is {newest[-1]}: free space, then go on from it with "
            "train.resume=auto"
            if newest
            else "no checkpoint is complete yet: free space, then start again"
        )
        raise files.WriteError(f"{e}; {then}") from None
    for old in existing(run_dir)[:-KEEP]:
        old.unlink(missing_ok=True)
    return final


def load(path: Path) -> dict[str, Any]:
    """A checkpoint's dict, or CheckpointError naming the file and what is wrong with it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch reports truncation, foreign pickles and bad zips many ways
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable dist_vpg checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dist_vpg checkpoint (format {FORMAT} expected)")
    for key in ("update", "model", "optimizer", "config"):
        if key not in state:
            raise CheckpointError(f"{path}: incomplete checkpoint, '{key}' is missing")
    return state


WEIGHTS = ("auto", "average", "trained")  # which of a checkpoint's weights load_agent loads


def load_agent(path: Path, overrides: list[str] | tuple = (), weights: str = "auto"):
    """The one way an agent is read from a checkpoint: (agent in eval mode, its config with the
    overrides applied). `weights`: auto, the weights' average where the checkpoint holds one
    (train.average), else the trained weights; average or trained, that one (average refused where
    there is none). Weights that do not fit the overridden config are refused naming the keys."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)} (got {weights!r})")
    state = load(path)
    _same_task(path, trained_config(state["config"]).task.name, overrides)
    cfg = trained_config(state["config"], overrides)
    agent = agent_for(cfg, make_task(cfg.task))
    if weights == "average" and "average" not in state:
        raise CheckpointError(f"{path}: holds no weight average (it was trained with train.average=0)")
    chosen = state["average"] if weights != "trained" and "average" in state else state["model"]
    try:
        agent.load_state_dict(chosen)
    except RuntimeError:
        raise CheckpointError(f"{path}: {_misfit(state, cfg)}") from None
    agent.eval()
    return agent, cfg


def _same_task(path: Path, trained: str, overrides) -> None:
    """An agent plays the task it was trained on: task.name=X naming another is refused in a sentence
    (the trained task's own keys would otherwise be refused one by one as the new task's)."""
    for override in overrides:
        key, _, value = str(override).partition("=")
        asked = value.strip()
        if key.strip() == "task.name" and asked != trained:
            raise CheckpointError(
                f"{path}: an agent of the {trained} task cannot play {asked}: its network was built "
                f"for {trained}'s inputs and actions (train one on {asked}, or leave task.name out)"
            )


def _misfit(state: dict, cfg: config.Config) -> str:
    """Why a checkpoint's weights do not fit the network `cfg` builds: the keys changed from its own."""
    trained, asked = config.to_dict(trained_config(state["config"])), config.to_dict(cfg)
    changed, was = [], []
    for section in ("task", "agent"):
        for key, value in asked[section].items():
            if trained[section].get(key) != value:
                changed.append(f"{section}.{key}={value}")
                if key in trained[section]:
                    was.append(f"{section}.{key}={trained[section][key]}")
    return (
        f"the agent was trained with {', '.join(was) or 'another task'}; its network's inputs and outputs "
        f"do not fit {', '.join(changed) or 'this task'}"
    )


def has_average(path: Path) -> bool:
    """Whether the checkpoint holds a weight average (a run with train.average > 0)."""
    return "average" in load(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_training_state(
    run_dir: Path,
    cfg: config.Config,
    update: int,
    agent: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    tracker_state: dict | None,
    train_s: float = 0.0,
    average: dict | None = None,
    average_updates: int = 0,
    curriculum: dict | None = None,
    batch_schedule: dict | None = None,
) -> Path:
    """The state a run resumes from: weights, optimizer, config, RNG, tracker and training time, the
    weights' average where the run keeps one, with the updates it has averaged
    (dist_vpg.averaging), where the run has a curriculum, the stage it is in
    (dist_vpg.curriculum.Position), and where its batch follows the noise scale, that schedule's
    state (dist_vpg.batching.FollowNoise)."""
    state = {
        "update": update,
        "model": agent.state_dict(),
        "optimizer": optimizer.state_dict(),
        "config": config.to_dict(cfg),
        "rng": {"torch": torch.get_rng_state()},
        "tracker": tracker_state,
        "train_s": train_s,
    }
    if average is not None:
        state["average"] = average
        state["average_updates"] = average_updates
    if curriculum is not None:
        state["curriculum"] = curriculum
    if batch_schedule is not None:
        state["batch_schedule"] = batch_schedule
    return save(run_dir, state)
