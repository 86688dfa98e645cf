"""Interruptions: resuming a run from its newest valid checkpoint, and stopping cleanly on a signal.

A restarted job (torchrun --max-restarts, or a user running the same command again with
train.resume=auto) reads the newest checkpoint that loads, skipping damaged ones, and goes on from
its update with the same model, optimizer, RNG and tracker state. Episodes are a pure function of
(seed, update, episode), so the resumed run plays exactly the episodes the lost one would have.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dist_vpg import checkpoint, config, files, tasks
from dist_vpg.config import Config, ConfigError

# Keys that must agree between a checkpoint and the run resuming from it: the weights' shapes, the
# episodes' meaning and the curriculum's stages. Everything else (updates, logging, sync strategy)
# may change on resume.
MUST_MATCH = ("task", "agent", "seed", "curriculum")


def newest_valid(run_dir: Path, cfg: Config) -> tuple[dict | None, list[str]]:
    """The newest checkpoint in run_dir that loads and fits cfg, and warnings about those skipped.
    A checkpoint that loads but belongs to another task or model is an error, not a skip: going
    on from an older one would silently mix two runs."""
    warnings = []
    for path in reversed(checkpoint.existing(run_dir)):
        try:
            state = checkpoint.load(path)
        except checkpoint.CheckpointError as e:
            warnings.append(f"skipping a damaged checkpoint: {e}")
            continue
        try:  # the checkpoint's config as this version reads it (its task settings mapped, etc.)
            saved = config.to_dict(checkpoint.trained_config(state["config"]))
        except ConfigError as e:
            raise checkpoint.CheckpointError(f"{path}: its config no longer loads: {e}") from None
        wanted = config.to_dict(cfg)
        for key in MUST_MATCH:
            if saved.get(key) != wanted[key]:
                raise checkpoint.CheckpointError(
                    f"{path}: made with {key}={saved.get(key)}, this run has {key}={wanted[key]}; "
                    "resume with the run's own config or choose another run_dir"
                )
        state["path"] = str(path)
        return state, warnings
    return None, warnings


# Keys that must agree between the checkpoint a run starts from (train.init_from) and the run: the
# weights' shapes. The task may differ in its probabilities and horizon, not in what the agent sees
# (its observation and actions, compared on the tasks themselves).
INIT_MUST_MATCH = (("agent", "cell"), ("agent", "hidden"), ("task", "name"), ("task", "trial_input"))


def initial_weights(cfg: Config) -> dict[str, torch.Tensor] | None:
    """The weights named by train.init_from, checked against this run's agent; None when unset."""
    if not cfg.train.init_from:
        return None
    path = Path(cfg.train.init_from)
    agent, saved = checkpoint.load_agent(path, weights="trained")
    for section, key in INIT_MUST_MATCH:
        had, has = getattr(getattr(saved, section), key), getattr(getattr(cfg, section), key)
        if had != has:
            raise checkpoint.CheckpointError(
                f"train.init_from: {path} was made with {section}.{key}={had}, this run has {has}"
            )
    had, has = tasks.make_task(saved.task), tasks.make_task(cfg.task)
    for what in ("num_actions", "obs_size"):
        if getattr(had, what) != getattr(has, what):
            raise checkpoint.CheckpointError(
                f"train.init_from: {path} was made for a task with {what}={getattr(had, what)}, this "
                f"run's has {getattr(has, what)}"
            )
    return agent.state_dict()


def restore(state: dict, agent: torch.nn.Module, optimizer: torch.optim.Optimizer, shared=None) -> int:
    """Load a checkpoint's state into this rank's objects (and the tracker's state into the tracker,
    given its client); returns the update to go on from."""
    agent.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("rng"):
        torch.set_rng_state(state["rng"]["torch"])
    if state.get("tracker") and shared is not None:
        shared.load_state_dict(state["tracker"])
    return int(state["update"])


class StopRequest:
    """SIGINT and SIGTERM set a flag that the training loop polls between updates, so the job can
    agree on a last update, save it and leave. A second signal restores the default behaviour."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: int | None = None
        self.previous = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only; a job run from a thread cannot be stopped so
        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.signal = signum
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self) -> bool:
        return self.signal is not None


@dataclass
class RunStart:
    """Where a run starts: its directory, the checkpoint state it resumes from (None: a new run),
    warnings about checkpoints skipped on the way, and the weights of train.init_from (or None)."""

    run_dir: Path
    resumed: dict | None
    warnings: list[str]
    initial: dict[str, torch.Tensor] | None


def prepare_run_dir(cfg: Config) -> RunStart:
    """Create the run directory and write the resolved config. A run_dir that holds checkpoints is
    refused unless train.resume=auto; a refused start changes nothing in it. Raises ConfigError,
    checkpoint.CheckpointError or files.WriteError."""
    run_dir = Path(cfg.run_dir or time.strftime("runs/%Y%m%d-%H%M%S"))
    initial = initial_weights(cfg)
    state, warnings = None, []
    if checkpoint.existing(run_dir):
        if cfg.train.resume != "auto":
            raise ConfigError(
                f"run_dir: {run_dir} already holds checkpoints; choose another run_dir, "
                "or go on from them with train.resume=auto"
            )
        state, warnings = newest_valid(run_dir, cfg)
        if state is None:
            raise checkpoint.CheckpointError(
                f"{run_dir}: train.resume=auto, but none of its checkpoints loads ({'; '.join(warnings)})"
            )
    files.writable_dir(run_dir, "run_dir")
    files.atomic_write(
        run_dir / "config.yaml", config.to_yaml(dataclasses.replace(cfg, run_dir=str(run_dir)))
    )
    return RunStart(run_dir, state, warnings, initial)


# What a failed start raises, on rank 0, to be raised again on every rank.
START_ERRORS = (ConfigError, checkpoint.CheckpointError, files.WriteError)
