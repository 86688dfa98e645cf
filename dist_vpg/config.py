"""One frozen, typed configuration: dataclass defaults, then a YAML file, then dotted overrides.

OmegaConf does the merging and refuses unknown keys and wrong types; `check` refuses impossible
values. Every refusal is a `ConfigError` whose message is one line naming the key. The task section
is the settings of the task that task.name names (dist_vpg.tasks): its own keys and defaults, merged
apart from the rest once the name is known.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dist_vpg import batching, curriculum, sync, tasks
from dist_vpg.settings import ConfigError, TaskSettings, choice, describe, printable, require, setting

__all__ = ["Config", "ConfigError", "TaskSettings", "printable"]  # the last two re-exported

DEFAULT_TASK = tasks.DEFAULT
ROLLOUT_MODES = ("native", "twopass", "onepass")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
SIGNALS = ("reward", "regret", "imitation")
LR_SCALING = ("none", "sqrt", "linear")
PROGRESS = ("auto", "bar", "lines")
RESUME = ("never", "auto")
CELLS = ("lstm", "gru", "rnn")  # dist_vpg.agent.CELLS


@dataclass(frozen=True)
class AgentConfig:
    # The recurrent cell: the papers' LSTM; a GRU; or a vanilla tanh RNN, the easiest to read as a
    # model of cortex. The LSTM alone has a native kernel: the others train on the torch path.
    cell: str = setting("lstm", "lstm | gru | rnn (a tanh RNN); the LSTM alone runs natively")
    hidden: int = setting(48, "units of the recurrent cell")
    # The critic also sees what only the trainer knows (the task's privileged features, e.g. the
    # arms' payout probabilities, and the trial index); the policy never does, so what the agent
    # plays from its inputs is unchanged (dist_vpg.agent).
    privileged_critic: bool = setting(
        False, "the value head also sees the task's hidden parameters (training only)"
    )
    reward_scale: float = setting(
        1.0, "the previous reward enters the agent's input multiplied by this (what it is paid is unchanged)"
    )


@dataclass(frozen=True)
class TrainConfig:
    updates: int = setting(16000, "optimizer steps of the run")
    # Global episodes per rollout round, split evenly over the ranks. One update sees
    # batch_episodes * sync.accumulate episodes.
    batch_episodes: int = setting(256, "episodes per rollout round, all ranks together")
    # Weak scaling (dist_vpg.batching): batch_episodes is each rank's rollout round instead, so the
    # global batch grows with the ranks, and lr_scaling sets how the learning rate follows it:
    # multiplied by (ranks) ** 0, 1/2 or 1. The lr and lr_final above are for one rank's batch.
    weak_scaling: bool = setting(
        False, "batch_episodes is each rank's: the global batch grows with the ranks"
    )
    lr_scaling: str = setting(
        "none", "with weak_scaling: the lr times ranks ** 0 (none), 1/2 (sqrt) or 1 (linear)"
    )
    rollout: str = setting(
        "native", "native (C, where the task has a native step) | twopass | onepass (torch)"
    )
    # A checkpoint whose weights this run starts from (not its optimizer, schedule or update
    # count): fine-tuning a trained agent under another objective. "" starts from random weights.
    init_from: str = setting(
        "", 'a checkpoint whose weights (only) this run starts from; "" for random weights'
    )
    optimizer: str = setting("rmsprop", "rmsprop | adam | sgd")
    # Schedules: each *_final is the value at the last update, reached linearly; < 0 keeps it
    # constant. The defaults are the settings of configs/bandit_independent.yaml: learn from the
    # regret (`signal`), with the discount rising from 0.9 to 1 (the objective the tasks are scored
    # on), the entropy bonus falling from 0.05 and the lr from 1e-3. docs/learning.md: what each
    # change bought, and the settings of the dependent and two-step configs.
    lr: float = setting(1e-3, "learning rate at the first update")
    lr_final: float = setting(1e-4, "learning rate at the last update, reached linearly; < 0: constant")
    gamma: float = setting(0.9, "discount at the first update")
    gamma_final: float = setting(1.0, "discount at the last update, reached linearly; < 0: constant")
    gae_lambda: float = setting(1.0, "GAE's lambda; 1: plain discounted returns")
    beta_v: float = setting(0.05, "weight of the value loss")
    # The value head predicts the return per (discounted) trial left rather than the return itself:
    # the critic fits returns of any horizon with small weights.
    value_scale: bool = setting(True, "the critic predicts the return per (discounted) trial left")
    beta_e: float = setting(0.05, "entropy bonus at the first update")
    beta_e_final: float = setting(0.01, "entropy bonus at the last update, reached linearly; < 0: constant")
    max_grad_norm: float = setting(50.0, "0 disables clipping")
    # What the loss is trained on: `reward`, the reward each trial paid; or `regret`, minus the
    # trial's expected regret (the chosen action's expected reward minus the best one's). Both have
    # the same best policy and the same policy gradient in expectation, for any gamma; `regret`
    # drops the reward's sampling noise and the episode-to-episode spread of the task's payouts,
    # which the agent can neither control nor foresee (losses.training_signal). It uses the task's
    # hidden parameters, which only the trainer sees: the agent's inputs are the same either way.
    # `imitation` is no reinforcement learning at all: the policy learns the cross-entropy to the
    # task's exact Bayes-optimal action on the histories the agent itself plays (DAgger-style;
    # TaskUnit.expert), its critic the regret signal; a measure of what the network can hold.
    signal: str = setting(
        "regret", "reward (what each trial paid) | regret (minus its expected regret) | imitation"
    )
    # Episodes that play one task draw, side by side in a rollout. With K > 1 each episode's
    # advantages are taken relative to the others' on its task (losses.a2c_loss): what the task's
    # hidden parameters alone make the critic get wrong cancels. Rollouts of each rank must hold
    # whole groups.
    episodes_per_task: int = setting(1, "episodes side by side on one task draw, advantages relative within")
    # Arm-swapped mirrors: episode 2g + 1 of every rollout plays episode 2g's task with the arms'
    # order reversed, on the same reward draws and mirrored action noise (TaskUnit.mirror), so an
    # agent that treats the arms alike plays it as 2g's mirror image: what a gradient learns about
    # one arm it learns about the other.
    mirror: bool = setting(False, "odd episodes are the arm-swapped mirrors of the even ones before them")
    # An exponential average of the weights (dist_vpg.averaging), saved in each checkpoint beside
    # them; evaluation, validation and play use it where a checkpoint holds one (evaluate
    # --weights trained for the weights themselves). It is a mean of the weights so far weighted
    # toward recent updates until about 2 / (1 - average) updates, so early evaluations score
    # about what the weights play, never the random initial ones.
    average: float = setting(
        0.999, "decay of the weights' exponential average (0.999: ~the last 1000 updates)"
    )
    # never: a run_dir holding checkpoints is refused. auto: go on from its newest valid checkpoint
    # (model, optimizer, update, RNG, tracker), or start afresh when it holds none.
    resume: str = setting(
        "never", "never (a run_dir with checkpoints is refused) | auto (go on from the newest)"
    )


@dataclass(frozen=True)
class SyncConfig:
    strategy: str = setting("allreduce", "how gradients are synchronized (docs/sync.md)")
    accumulate: int = setting(1, "rollouts (backward calls) per rank before one synchronization")
    # A batch schedule: the accumulation rounds rise linearly from `accumulate` at the first update
    # to this at the last (dist_vpg.batching), later updates seeing more episodes. 0: constant.
    accumulate_final: int = setting(
        0, "accumulation rounds at the last update, reached linearly; 0: constant"
    )
    # The schedule following the measured noise scale instead (dist_vpg.batching.FollowNoise): the
    # rounds grow from `accumulate` toward `accumulate_final` as the noise scale does, each update's
    # batch kept at least this fraction of it. 0: the linear schedule.
    follow_noise: float = setting(
        0.0, "grow the rounds so each batch is at least this fraction of the noise scale; 0: linear"
    )
    check_every: int = setting(100, "updates between cross-rank checksums of parameters and optimizer")
    max_skipped: int = setting(10, "consecutive non-finite gradients tolerated before the run stops")
    timeout_s: float = setting(300.0, "collective timeout")
    # Diagnostic: a barrier before each update's synchronization, timed apart, splits the sync phase
    # into the wait for the slowest rank (sync_wait) and the collectives themselves (sync).
    measure_wait: bool = setting(False, "time a barrier before each sync apart: waiting vs collectives")
    node_size: int = setting(
        0, "hierarchical: ranks per node; 0 takes torchrun's layout (cut consecutive ranks to emulate nodes)"
    )
    period: int = setting(8, "local_sgd: updates between weight averages")
    powersgd_rank: int = setting(2, "ddp_powersgd: rank of each gradient matrix's approximation")
    powersgd_start: int = setting(2, "ddp_powersgd: updates of plain all_reduce before compression starts")


@dataclass(frozen=True)
class CpuConfig:
    affinity: Any = setting("auto", "auto | none | [cores...] split among this node's ranks")
    threads: int = setting(0, "intra-op threads per rank; 0: the cores of its block")
    # glibc's malloc keeps freed memory instead of unmapping it: no page faults per update, ranks
    # equally fast (pinning.retain_freed_memory); false returns freed memory to the system at once.
    retain_freed: bool = setting(
        True, "keep freed memory mapped (no page faults per update); false returns it"
    )


@dataclass(frozen=True)
class TrackerConfig:
    enabled: bool = setting(True, "the shared reward tracker (rank 0 serves it)")
    required: bool = setting(
        True, "false: an unreachable tracker is a warning and the run goes on without it"
    )
    host: str = setting("", "empty: $DIST_VPG_TRACKER_HOST, else $MASTER_ADDR, else 127.0.0.1")
    port: int = setting(0, "0: $DIST_VPG_TRACKER_PORT, else a free port")
    smoothing: float = setting(0.05, "weight of the newest report in the EMA of episode return")
    timeout_s: float = setting(10.0, "for connecting and for every call")


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = setting(200, "updates between checkpoints; one is always written at the end")


@dataclass(frozen=True)
class LogConfig:
    every: int = setting(20, "updates between log lines and TensorBoard scalars")
    tensorboard: bool = setting(True, "event files in <run_dir>/tb, written by rank 0")
    histograms_every: int = setting(500, "updates between weight and gradient histograms; 0: never")
    progress: str = setting("auto", "auto (a bar on a terminal, lines otherwise) | bar | lines")
    # The gradient noise scale's exponential averages, per update (dist_vpg.gradient_noise): each
    # update's estimate is the difference of two large numbers, so it takes hundreds to settle.
    noise_scale_decay: float = setting(
        0.998, "smoothing of the gradient noise scale's averages (0.998: ~500 updates)"
    )


@dataclass(frozen=True)
class EvalConfig:
    every: int = setting(250, "updates between evaluations with frozen weights during training; 0: never")
    episodes: int = setting(500, "fresh episodes per evaluation (noise split VALID), spread over the ranks")


@dataclass(frozen=True)
class Config:
    seed: int = setting(0, "fixes the weights' initialization and every training episode")
    run_dir: str = setting("", "empty: runs/<timestamp>")
    task: TaskSettings = field(default_factory=lambda: tasks.settings(DEFAULT_TASK))
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    cpu: CpuConfig = field(default_factory=CpuConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # The stages the run trains through before the task as configured (dist_vpg.curriculum): `task`
    # (the task's own, where it declares one), `none`, or a list of stages; resolved when loaded to
    # the list, which --show-config prints and checkpoints keep.
    curriculum: Any = setting("task", "task (the task's own stages, if any) | none | a list of stages")


def load(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file at `path`, then `key=value` overrides; checked."""
    layers = [_read_yaml(Path(path))] if path is not None else []
    return _build(layers + [_parse_overrides(overrides)], overrides)


def from_dict(data: dict[str, Any], overrides: Sequence[str] = ()) -> Config:
    """A config from a plain nested dict (as stored in a checkpoint), then overrides; checked."""
    try:
        layer = OmegaConf.create(data)
    except OmegaConfBaseException as e:
        raise _merge_error(e, overrides) from None
    return _build([layer, _parse_overrides(overrides)], overrides)


def _build(layers: list[DictConfig], overrides: Sequence[str]) -> Config:
    """The layers merged over the defaults: every section but the task onto the schema, the task's
    layers onto the settings of the task they name; checked."""
    explicit = {key for layer in layers for key in _dotted(OmegaConf.to_container(layer))}
    task_layers = [layer.pop("task") for layer in layers if "task" in layer]
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), *layers))
    except OmegaConfBaseException as e:
        raise _merge_error(e, overrides) from None
    cfg = dataclasses.replace(cfg, task=_task_settings(task_layers, overrides))
    cfg = _with_task_training(cfg, explicit)
    check(cfg)
    declared = tasks.lookup(cfg.task.name).curriculum
    stages = curriculum.resolve(
        cfg.curriculum, declared, explicit, cfg.train.updates, cfg.eval.every, cfg.task.name
    )
    cfg = dataclasses.replace(cfg, curriculum=stages)
    _check_stages(cfg)
    return cfg


def _with_task_training(cfg: Config, explicit: set[str]) -> Config:
    """cfg with its task's training keys (TaskUnit.training: train.*, agent.* and sync.*) where the
    layers left them unset."""
    training = tasks.lookup(cfg.task.name).training
    sections = {"train": TrainConfig, "agent": AgentConfig, "sync": SyncConfig}
    known = {f"{name}.{f.name}" for name, kind in sections.items() for f in dataclasses.fields(kind)}
    unknown = sorted(set(training) - known)
    require(
        not unknown,
        f"task {cfg.task.name}",
        f"its training keys {unknown} are not train.*, agent.* or sync.* keys",
    )
    for name in sections:
        chosen = {
            key.removeprefix(f"{name}."): value
            for key, value in training.items()
            if key.startswith(f"{name}.") and key not in explicit
        }
        if chosen:
            cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **chosen)})
    # A task's batch schedule grows the rounds from the configuration's sync.accumulate; one that
    # would shrink them (a configuration of more rounds than the task grows to) is left out.
    if "sync.accumulate_final" in training and "sync.accumulate_final" not in explicit:
        if cfg.sync.accumulate_final < cfg.sync.accumulate:
            cfg = dataclasses.replace(cfg, sync=dataclasses.replace(cfg.sync, accumulate_final=0))
    return cfg


def _dotted(data: Any, prefix: str = "") -> list[str]:
    """The dotted keys of a nested mapping's leaves."""
    if not isinstance(data, dict):
        return [prefix[:-1]] if prefix else []
    return [key for k, v in data.items() for key in _dotted(v, f"{prefix}{k}.")]


def at_stage(cfg: Config, stage: curriculum.Stage) -> Config:
    """The configuration a curriculum's stage trains with: cfg with the stage's keys set (and no
    curriculum of its own); checked."""
    data = to_dict(cfg)
    data["curriculum"] = "none"
    for key, value in stage.settings.items():
        section, name = key.split(".", 1)
        data[section][name] = value
    return from_dict(data)


def _check_stages(cfg: Config) -> None:
    """Every stage a configuration that loads, of the run's task with the same inputs and actions
    (the weights carry over), and every level looked at by the periodic validation in time."""
    final = tasks.make_task(cfg.task)
    for i, stage in enumerate(curriculum.stages(cfg.curriculum)):
        where = f"curriculum stage {i + 1}"
        try:
            task = tasks.make_task(at_stage(cfg, stage).task)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        for what in ("obs_size", "num_actions"):
            require(
                getattr(task, what) == getattr(final, what),
                where,
                f"its task has {what}={getattr(task, what)}, the run's {getattr(final, what)}: the agent's "
                "weights could not carry over",
            )
        if stage.until_regret is not None:
            every = cfg.eval.every
            require(
                0 < every <= (stage.updates or 0),
                f"{where}.until_regret",
                f"is looked at by the periodic validation, every eval.every={every} updates: "
                f"it must be between 1 and the stage's {stage.updates} updates",
            )


def _task_settings(layers: list, overrides: Sequence[str]) -> TaskSettings:
    """The task's settings: its unit's defaults, then each layer's task.* keys, which must be its."""
    for layer in layers:
        if not isinstance(layer, DictConfig):
            raise ConfigError(f"task: must be a mapping of task.* keys (got {layer!r})")
    names = [layer.name for layer in layers if "name" in layer]
    name = names[-1] if names else DEFAULT_TASK
    require(isinstance(name, str) and bool(name), "task.name", f"must be a task's name (got {name!r})")
    unit = tasks.lookup(name)
    keys = [f.name for f in dataclasses.fields(unit.Settings)]
    for layer in layers:
        for key in layer:
            require(
                key in keys,
                f"task.{key}",
                f"the {name} task has no such key; its keys: {', '.join(keys)}",
            )
    try:
        merged = OmegaConf.merge(OmegaConf.structured(unit.Settings), *layers, {"name": name})
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(f"task.{getattr(e, 'full_key', '') or 'name'}: {_first_line(e)}") from None


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key written twice in one mapping (plain YAML keeps the
    last one without a word: `lr: 0.01` then `lr: 0.02` would train at 0.02)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is written twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read_yaml(path: Path):
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"--config: {path}{line} is not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of keys, not {type(data).__name__}")
    return OmegaConf.create(data)


def _parse_overrides(overrides: Sequence[str]):
    """`a.b=value` items as one config, each value read as YAML (a string where it is not YAML).
    Each item becomes its own nested mapping first, so an error names the key that caused it."""
    layers = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item}: overrides are key=value, e.g. train.lr=0.001")
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed = value
        for part in reversed(key.split(".")):
            parsed = {part: parsed}
        try:
            layers.append(OmegaConf.create(parsed))
        except OmegaConfBaseException as e:
            raise ConfigError(f"{key}: {_first_line(e)}") from None
    try:
        return OmegaConf.merge(*layers) if layers else OmegaConf.create({})
    except OmegaConfBaseException as e:
        raise _merge_error(e, overrides) from None


def _merge_error(e: OmegaConfBaseException, overrides: Sequence[str]) -> ConfigError:
    """OmegaConf names the key of most errors; where it does not, name the overrides given."""
    key = getattr(e, "full_key", "") or ", ".join(o.partition("=")[0] for o in overrides) or "config"
    return ConfigError(f"{key}: {_first_line(e)}")


def _first_line(e: Exception) -> str:
    return str(getattr(e, "msg", None) or e).split("\n")[0]  # not splitlines: it also splits at \x1c-\x1e


MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week: beyond it, the clocks that timeouts are added to overflow
TIMEOUT_RANGE = "must lie in [0.001, 604800] seconds (a millisecond to a week)"
INT64_MAX = 2**63 - 1  # integers travel as int64 or uint64 (torch seeds, noise counters, tensors)


def _check_numbers(node: Any, prefix: str = "") -> None:
    """Every float finite and every integer within int64, wherever it sits in the schema: a NaN or an
    infinity passes every comparison check it should fail, and a huge integer overflows downstream."""
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_numbers(value, f"{key}.")
        elif isinstance(value, float):
            require(math.isfinite(value), key, f"must be a finite number (got {value})")
        elif isinstance(value, int) and not isinstance(value, bool):
            require(abs(value) <= INT64_MAX, key, f"must lie within +-{INT64_MAX} (got {value})")


def check(cfg: Config) -> None:
    """Refuse values no run can use, section by section. World-size constraints are checked by
    `check_world`."""
    _check_numbers(cfg)
    require(cfg.seed >= 0, "seed", "must be >= 0")
    cfg.task.check()
    _check_agent(cfg)
    _check_train(cfg)
    _check_schedules(cfg)
    _check_sync(cfg)
    _check_services(cfg)


def _check_agent(cfg: Config) -> None:
    t, a = cfg.task, cfg.agent
    choice(a.cell, "agent.cell", CELLS)
    require(a.hidden >= 1, "agent.hidden", "must be >= 1")
    require(a.reward_scale > 0, "agent.reward_scale", f"must be > 0 (got {a.reward_scale})")
    require(
        not a.privileged_critic or tasks.make_task(t).offers("privileged"),
        "agent.privileged_critic",
        f"the {t.name} task offers no privileged features (its unit defines no `privileged`)",
    )


def _check_train(cfg: Config) -> None:
    """The batch, the rollout, the optimizer and the learning signal."""
    t, tr = cfg.task, cfg.train
    require(tr.updates >= 1, "train.updates", "must be >= 1")
    require(tr.batch_episodes >= 1, "train.batch_episodes", "must be >= 1")
    choice(tr.lr_scaling, "train.lr_scaling", LR_SCALING)
    require(
        tr.weak_scaling or tr.lr_scaling == "none",
        "train.lr_scaling",
        "scales the lr with the ranks under train.weak_scaling=true only (without it the batch is the same "
        "on any number of ranks)",
    )
    choice(tr.rollout, "train.rollout", ROLLOUT_MODES)
    choice(tr.optimizer, "train.optimizer", OPTIMIZERS)
    choice(tr.signal, "train.signal", SIGNALS)
    require(
        tr.signal != "imitation" or tasks.make_task(t).offers("expert"),
        "train.signal",
        f"imitation needs an exact expert, which this {t.name} task does not offer (TaskUnit.expert)",
    )
    require(tr.episodes_per_task >= 1, "train.episodes_per_task", "must be >= 1")
    require(
        tr.batch_episodes % tr.episodes_per_task == 0,
        "train.episodes_per_task",
        f"{tr.episodes_per_task} does not divide train.batch_episodes={tr.batch_episodes}",
    )


def _check_schedules(cfg: Config) -> None:
    """The lr, discount and loss weights, the average, mirrors and resuming."""
    t, tr = cfg.task, cfg.train
    require(tr.lr > 0, "train.lr", "must be > 0")
    require(
        tr.lr_final < 0 or tr.lr_final <= tr.lr,
        "train.lr_final",
        f"{tr.lr_final:g} is above train.lr={tr.lr:g}: the schedule only decays; set train.lr_final "
        "as well (-1 keeps the lr constant)",
    )
    require(0.0 <= tr.gamma <= 1.0, "train.gamma", "must lie in [0, 1]")
    require(tr.gamma_final <= 1.0, "train.gamma_final", "must lie in [0, 1] (< 0: constant gamma)")
    require(0.0 <= tr.gae_lambda <= 1.0, "train.gae_lambda", "must lie in [0, 1]")
    require(tr.beta_v >= 0, "train.beta_v", "must be >= 0")
    require(tr.beta_e >= 0, "train.beta_e", "must be >= 0")
    require(tr.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0 (0 disables clipping)")
    require(0.0 <= tr.average < 1.0, "train.average", "must lie in [0, 1) (0: no weight average)")
    require(
        not tr.mirror or tasks.make_task(t).offers("mirror"),
        "train.mirror",
        f"the {t.name} task has no arm-swapped mirror (its unit defines no `mirror`)",
    )
    require(
        not (tr.mirror and tr.episodes_per_task > 1),
        "train.mirror",
        "pairs an episode with its mirror; it cannot also group episodes by task (train.episodes_per_task)",
    )
    choice(tr.resume, "train.resume", RESUME)


def _check_sync(cfg: Config) -> None:
    """The strategy (and what it refuses: sync.Strategy.refuse), accumulation, checks and timeouts."""
    s = cfg.sync
    choice(s.strategy, "sync.strategy", tuple(sync.STRATEGIES))
    require(s.accumulate >= 1, "sync.accumulate", "must be >= 1")
    require(
        s.accumulate_final == 0 or s.accumulate_final >= s.accumulate,
        "sync.accumulate_final",
        f"must be 0 (constant) or at least sync.accumulate={s.accumulate}: the schedule grows the batch",
    )
    require(s.follow_noise >= 0, "sync.follow_noise", "must be >= 0 (0: the linear schedule)")
    if s.follow_noise:
        require(
            s.accumulate_final > s.accumulate,
            "sync.follow_noise",
            f"needs room to grow: sync.accumulate_final above sync.accumulate={s.accumulate}",
        )
        strategy = sync.STRATEGIES[s.strategy]
        unavailable = strategy.noise_scale_unavailable
        if strategy.reduces_in_backward:
            unavailable = f"{s.strategy} reduces inside backward, where each half's gradient is not seen"
        require(not unavailable, "sync.follow_noise", f"cannot follow the noise scale: {unavailable}")
    require(s.check_every >= 0, "sync.check_every", "must be >= 0 (0 disables the check)")
    require(s.max_skipped >= 1, "sync.max_skipped", "must be >= 1")
    require(0.001 <= s.timeout_s <= MAX_TIMEOUT_S, "sync.timeout_s", TIMEOUT_RANGE)
    require(s.node_size >= 0, "sync.node_size", "must be >= 0 (0: the nodes torchrun laid out)")
    require(s.period >= 1, "sync.period", "must be >= 1")
    require(s.powersgd_rank >= 1, "sync.powersgd_rank", "must be >= 1")
    require(
        s.powersgd_start >= 2,
        "sync.powersgd_start",
        "must be >= 2 (torch's PowerSGD with error feedback needs two plain updates)",
    )
    sync.STRATEGIES[s.strategy].refuse(cfg)


def _check_services(cfg: Config) -> None:
    """Cores, the tracker, checkpoints, logging and the periodic evaluation."""
    _check_affinity(cfg.cpu.affinity)
    require(cfg.cpu.threads >= 0, "cpu.threads", "must be >= 0 (0: one per core of the rank's block)")
    require(0 <= cfg.tracker.port <= 65535, "tracker.port", "must lie in [0, 65535]")
    require(0 < cfg.tracker.smoothing <= 1, "tracker.smoothing", "must lie in (0, 1]")
    require(0.001 <= cfg.tracker.timeout_s <= MAX_TIMEOUT_S, "tracker.timeout_s", TIMEOUT_RANGE)
    require(cfg.checkpoint.every >= 1, "checkpoint.every", "must be >= 1")
    require(cfg.log.every >= 1, "log.every", "must be >= 1")
    require(0 <= cfg.log.noise_scale_decay < 1, "log.noise_scale_decay", "must lie in [0, 1)")
    require(cfg.log.histograms_every >= 0, "log.histograms_every", "must be >= 0 (0: never)")
    choice(cfg.log.progress, "log.progress", PROGRESS)
    require(cfg.eval.every >= 0, "eval.every", "must be >= 0 (0: never)")
    require(cfg.eval.episodes >= 2, "eval.episodes", "must be >= 2")


def _check_affinity(affinity: Any) -> None:
    if affinity in ("auto", "none"):
        return
    ok = (
        isinstance(affinity, (list, tuple))
        and affinity
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in affinity)
    )
    require(bool(ok), "cpu.affinity", f"must be auto, none or a list of core numbers (got {affinity!r})")


def check_world(cfg: Config, world_size: int) -> None:
    """Each rank rolls out an equal share of every rollout round."""
    require(
        cfg.train.weak_scaling or cfg.train.batch_episodes % world_size == 0,
        "train.batch_episodes",
        f"{cfg.train.batch_episodes} episodes do not split evenly over {world_size} ranks "
        "(train.weak_scaling=true makes them each rank's)",
    )
    sync.STRATEGIES[cfg.sync.strategy].refuse(cfg, world_size)
    batches, k = batching.plan(cfg, world_size), cfg.train.episodes_per_task
    require(
        batches.share % batches.split == 0,
        "sync.follow_noise",
        f"on {world_size} rank(s) each round is played as two rollouts, to measure the noise scale "
        f"from two halves of the episodes: {batches.share} episodes a rank do not halve",
    )
    share = batches.rollout_share
    require(
        not cfg.train.mirror or share % 2 == 0,
        "train.mirror",
        f"each of the {world_size} rank(s) plays {share} episodes a rollout: an odd number cannot hold "
        "whole pairs of an episode and its mirror",
    )
    require(
        share % k == 0,
        "train.episodes_per_task",
        f"each of the {world_size} rank(s) plays {share} episodes a rollout, which groups of {k} "
        "episodes per task do not fill evenly",
    )


def described() -> tuple[list, list, dict[str, list]]:
    """Every setting as --help and the docs show it (dist_vpg.settings.describe): the sections' keys
    but the task's, the task.* keys every task shares, and each registered task's own keys."""
    shared = {f.name for f in dataclasses.fields(TaskSettings)}
    sections = [d for d in describe(Config) if not d.key.startswith("task.")]
    every = [d for d in describe(tasks.TASKS[DEFAULT_TASK].Settings, "task.") if d.key[5:] in shared]
    own = {
        name: [d for d in describe(unit.Settings, "task.") if d.key[5:] not in shared]
        for name, unit in tasks.TASKS.items()
    }
    return sections, every, own


def settings_help(task_only: bool = False) -> str:
    """Every setting, its type, default and meaning, for --help: the sections of the schema, then
    the keys every task shares, then each registered task's own (generated from the definitions)."""
    sections, every, own = described()
    lines = [] if task_only else ["settings (key=value; type, default, meaning):"] + _rows(sections)
    lines += ["task settings every task has:"] + _rows(every)
    for name, keys in own.items():
        trials = tasks.TASKS[name].Settings().trials
        lines += [f"task.name={name} (task.trials default {trials}):"] + (
            _rows(keys) or ["  (no keys of its own)"]
        )
    lines.append("a task of your own: task.name=module:Class (docs: Adding a task)")
    return "\n".join(lines)


def _rows(found: list) -> list[str]:
    shown = lambda v: repr(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    return [f"  {d.key:26s} {d.type:5s} {shown(d.default):13s} {d.meaning}" for d in found]
