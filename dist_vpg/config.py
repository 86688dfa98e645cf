"""One frozen, typed configuration: dataclass defaults, then a YAML file, then dotted overrides.

OmegaConf does the merging and refuses unknown keys and wrong types; `check` refuses impossible
values. Every refusal is a `ConfigError` whose message is one line naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

TASKS = ("bandit", "two_step", "informative_arms", "restless", "harlow")
BANDIT_DISTRIBUTIONS = ("independent", "dependent", "easy", "medium", "hard")
ROLLOUT_MODES = ("native", "twopass", "onepass")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
SIGNALS = ("reward", "regret")
PROGRESS = ("auto", "bar", "lines")
RESUME = ("never", "auto")
SYNC_STRATEGIES = (
    "allreduce",
    "allreduce_per_param",
    "reduce_broadcast",
    "ddp",
    "allreduce_fp16",
    "hierarchical",
    "ddp_fp16",
    "ddp_bf16",
    "ddp_powersgd",
    "local_sgd",
)


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line that names the key. Characters that
    do not print (a key typed with a control character) are shown escaped, so that the line stays one."""

    def __init__(self, message: str):
        super().__init__(printable(message))


def printable(text: str) -> str:
    """`text` with every character that does not print escaped (a record separator as \\x1e)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


@dataclass(frozen=True)
class TaskConfig:
    name: str = "bandit"
    trials: int = 100
    trial_input: bool = True  # feed the normalized trial index t/T to the agent
    # bandit; informative_arms: the ordinary arms and then the informative one
    arms: int = 2
    distribution: str = "independent"
    # two_step
    common_prob: float = 0.8
    reward_high: float = 0.9
    reward_low: float = 0.1
    swap_prob: float = 0.025
    # informative_arms: the informative arm pays informative_scale * (target + 1) / (arms - 1); 1 is
    # the paper's task, larger values make its payout easier to read (a curriculum's first stage)
    informative_scale: float = 1.0
    # restless: arm 0 pays p, arm 1 pays 1 - p; p takes a Gaussian step of s.d. drift_low after each
    # trial of a stable episode, drift_high in a volatile one (a share volatile_share of episodes)
    drift_low: float = 0.02
    drift_high: float = 0.2
    volatile_share: float = 0.5
    # harlow: a fixed pool of `objects` objects, each `features` numbers in [0, 1]; with fixation,
    # each trial starts with a step that shows nothing (2 * trials agent steps an episode)
    objects: int = 1000
    features: int = 8
    fixation: bool = False


@dataclass(frozen=True)
class AgentConfig:
    hidden: int = 48


@dataclass(frozen=True)
class TrainConfig:
    updates: int = 8000
    # Global episodes per rollout round, split evenly over the ranks. One update sees
    # batch_episodes * sync.accumulate episodes.
    batch_episodes: int = 256
    rollout: str = "native"
    # A checkpoint whose weights this run starts from (not its optimizer, schedule or update
    # count): fine-tuning a trained agent under another objective. "" starts from random weights.
    init_from: str = ""
    optimizer: str = "rmsprop"
    # Schedules: each *_final is the value at the last update, reached linearly; < 0 keeps it
    # constant. The defaults are the settings of configs/bandit_independent.yaml: learn from the
    # regret (`signal`), with the discount rising from 0.9 to 1 (the objective the tasks are scored
    # on), the entropy bonus falling from 0.05 and the lr from 1e-3. README, "Learning": what each
    # change bought, and the settings of the dependent and two-step configs.
    lr: float = 1e-3
    lr_final: float = 1e-4
    gamma: float = 0.9
    gamma_final: float = 1.0
    gae_lambda: float = 1.0
    beta_v: float = 0.05
    # The value head predicts the return per (discounted) trial left rather than the return itself:
    # the critic fits returns of any horizon with small weights.
    value_scale: bool = True
    beta_e: float = 0.05
    beta_e_final: float = 0.01
    max_grad_norm: float = 50.0  # 0 disables clipping
    # What the loss is trained on: `reward`, the reward each trial paid; or `regret`, minus the
    # trial's expected regret (the chosen action's expected reward minus the best one's). Both have
    # the same best policy and the same policy gradient in expectation, for any gamma; `regret`
    # drops the reward's sampling noise and the episode-to-episode spread of the task's payouts,
    # which the agent can neither control nor foresee (losses.training_signal). It uses the task's
    # hidden parameters, which only the trainer sees: the agent's inputs are the same either way.
    signal: str = "regret"
    # Episodes that play one task draw, side by side in a rollout. With K > 1 each episode's
    # advantages are taken relative to the others' on its task (losses.a2c_loss): what the task's
    # hidden parameters alone make the critic get wrong cancels. Rollouts of each rank must hold
    # whole groups.
    episodes_per_task: int = 1
    # never: a run_dir holding checkpoints is refused. auto: go on from its newest valid checkpoint
    # (model, optimizer, update, RNG, tracker), or start afresh when it holds none.
    resume: str = "never"


@dataclass(frozen=True)
class SyncConfig:
    strategy: str = "allreduce"
    accumulate: int = 1  # rollouts (backward calls) per rank before one synchronization
    check_every: int = 100  # updates between cross-rank checksums of parameters and optimizer
    max_skipped: int = 10  # consecutive non-finite gradients tolerated before the run stops
    timeout_s: float = 300.0  # collective timeout
    # Diagnostic: a barrier before each update's synchronization, timed apart, splits the sync phase
    # into the wait for the slowest rank (sync_wait) and the collectives themselves (sync).
    measure_wait: bool = False
    # hierarchical: ranks per node; 0 takes torchrun's layout (cut consecutive ranks to emulate nodes)
    node_size: int = 0
    period: int = 8  # local_sgd: updates between weight averages
    powersgd_rank: int = 2  # ddp_powersgd: rank of each gradient matrix's approximation
    powersgd_start: int = 2  # ddp_powersgd: updates of plain all_reduce before compression starts


@dataclass(frozen=True)
class CpuConfig:
    affinity: Any = "auto"  # auto | none | [cores...] split among this node's ranks
    threads: int = 0  # intra-op threads per rank; 0: the cores of its block
    # glibc's malloc keeps freed memory instead of unmapping it: no page faults per update, ranks
    # equally fast (pinning.retain_freed_memory); false returns freed memory to the system at once.
    retain_freed: bool = True


@dataclass(frozen=True)
class TrackerConfig:
    enabled: bool = True
    required: bool = True  # false: an unreachable tracker is a warning and the run goes on without it
    host: str = ""  # empty: $DIST_VPG_TRACKER_HOST, else $MASTER_ADDR, else 127.0.0.1
    port: int = 0  # 0: $DIST_VPG_TRACKER_PORT, else a free port
    smoothing: float = 0.05  # weight of the newest report in the EMA of episode return
    timeout_s: float = 10.0  # for connecting and for every call


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 200  # updates between checkpoints; one is always written at the end


@dataclass(frozen=True)
class LogConfig:
    every: int = 20  # updates between log lines and TensorBoard scalars
    tensorboard: bool = True  # event files in <run_dir>/tb, written by rank 0
    histograms_every: int = 500  # updates between weight and gradient histograms; 0: never
    progress: str = "auto"  # auto (a bar on a terminal, lines otherwise) | bar | lines


@dataclass(frozen=True)
class EvalConfig:
    every: int = 250  # updates between evaluations with frozen weights during training; 0: never
    episodes: int = 500  # fresh episodes per evaluation (noise split VALID), spread over the ranks


@dataclass(frozen=True)
class Config:
    seed: int = 0
    run_dir: str = ""  # empty: runs/<timestamp>
    task: TaskConfig = field(default_factory=TaskConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    cpu: CpuConfig = field(default_factory=CpuConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def load(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file at `path`, then `key=value` overrides; checked."""
    layers = [OmegaConf.structured(Config)]
    if path is not None:
        layers.append(_read_yaml(Path(path)))
    layers.append(_parse_overrides(overrides))
    try:
        merged = OmegaConf.merge(*layers)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise _merge_error(e, overrides) from None
    check(cfg)
    return cfg


def from_dict(data: dict[str, Any], overrides: Sequence[str] = ()) -> Config:
    """A config from a plain nested dict (as stored in a checkpoint), then overrides; checked."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), data, _parse_overrides(overrides))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise _merge_error(e, overrides) from None
    check(cfg)
    return cfg


# Keys added after checkpoints were already being written, with the value every run had before them.
# A checkpoint's config that lacks one was trained with that value, not with today's default.
ADDED_LATER = {
    "train": {
        "gamma_final": -1.0,
        "value_scale": False,
        "init_from": "",
        "signal": "reward",
        "episodes_per_task": 1,
    },
    "sync": {"measure_wait": False},
}


def from_checkpoint(data: dict[str, Any], overrides: Sequence[str] = ()) -> Config:
    """The config a checkpoint was trained with (see ADDED_LATER), then overrides; checked."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for section, keys in ADDED_LATER.items():
        stored = data.setdefault(section, {})
        for key, value in keys.items():
            stored.setdefault(key, value)
    return from_dict(data, overrides)


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def _read_yaml(path: Path):
    try:
        data = yaml.safe_load(path.read_text())
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


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}")


def _choice(value: str, key: str, choices: Sequence[str]) -> None:
    _require(value in choices, key, f"must be one of {', '.join(choices)} (got {value!r})")


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
            _require(math.isfinite(value), key, f"must be a finite number (got {value})")
        elif isinstance(value, int) and not isinstance(value, bool):
            _require(abs(value) <= INT64_MAX, key, f"must lie within +-{INT64_MAX} (got {value})")


def check(cfg: Config) -> None:
    """Refuse values no run can use. World-size constraints are checked by `check_world`."""
    t, a, tr, s = cfg.task, cfg.agent, cfg.train, cfg.sync
    _check_numbers(cfg)
    _require(cfg.seed >= 0, "seed", "must be >= 0")
    _choice(t.name, "task.name", TASKS)
    _require(t.trials >= 1, "task.trials", "must be >= 1")
    _require(t.arms >= 2, "task.arms", "must be >= 2")
    _require(
        t.name != "informative_arms" or t.arms >= 3,
        "task.arms",
        f"informative_arms needs 2 ordinary arms and the informative one, at least 3 (task.arms={t.arms})",
    )
    _choice(t.distribution, "task.distribution", BANDIT_DISTRIBUTIONS)
    _require(
        t.distribution == "independent" or t.arms == 2,
        "task.distribution",
        f"{t.distribution!r} is defined for 2 arms only (task.arms={t.arms})",
    )
    _require(t.informative_scale > 0, "task.informative_scale", "must be > 0")
    for key in ("drift_low", "drift_high"):
        _require(0.0 <= getattr(t, key) <= 1.0, f"task.{key}", "must lie in [0, 1]")
    _require(0.0 <= t.volatile_share <= 1.0, "task.volatile_share", "must lie in [0, 1]")
    _require(t.objects >= 2, "task.objects", "must be >= 2 (Harlow shows two objects an episode)")
    _require(t.features >= 1, "task.features", "must be >= 1")
    _require(
        t.name not in ("restless", "harlow") or t.arms == 2,
        "task.arms",
        f"{t.name} has 2 choices (task.arms={t.arms})",
    )
    for key in ("common_prob", "reward_high", "reward_low", "swap_prob"):
        _require(0.0 <= getattr(t, key) <= 1.0, f"task.{key}", "must lie in [0, 1]")
    _require(a.hidden >= 1, "agent.hidden", "must be >= 1")
    _require(tr.updates >= 1, "train.updates", "must be >= 1")
    _require(tr.batch_episodes >= 1, "train.batch_episodes", "must be >= 1")
    _choice(tr.rollout, "train.rollout", ROLLOUT_MODES)
    _choice(tr.optimizer, "train.optimizer", OPTIMIZERS)
    _choice(tr.signal, "train.signal", SIGNALS)
    _require(tr.episodes_per_task >= 1, "train.episodes_per_task", "must be >= 1")
    _require(
        tr.batch_episodes % tr.episodes_per_task == 0,
        "train.episodes_per_task",
        f"{tr.episodes_per_task} does not divide train.batch_episodes={tr.batch_episodes}",
    )
    _require(tr.lr > 0, "train.lr", "must be > 0")
    _require(
        tr.lr_final < 0 or tr.lr_final <= tr.lr,
        "train.lr_final",
        f"{tr.lr_final:g} is above train.lr={tr.lr:g}: the schedule only decays; set train.lr_final "
        "as well (-1 keeps the lr constant)",
    )
    _require(0.0 <= tr.gamma <= 1.0, "train.gamma", "must lie in [0, 1]")
    _require(tr.gamma_final <= 1.0, "train.gamma_final", "must lie in [0, 1] (< 0: constant gamma)")
    _require(0.0 <= tr.gae_lambda <= 1.0, "train.gae_lambda", "must lie in [0, 1]")
    _require(tr.beta_v >= 0, "train.beta_v", "must be >= 0")
    _require(tr.beta_e >= 0, "train.beta_e", "must be >= 0")
    _require(tr.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0 (0 disables clipping)")
    _choice(tr.resume, "train.resume", RESUME)
    _choice(s.strategy, "sync.strategy", SYNC_STRATEGIES)
    _require(s.accumulate >= 1, "sync.accumulate", "must be >= 1")
    _require(s.check_every >= 0, "sync.check_every", "must be >= 0 (0 disables the check)")
    _require(s.max_skipped >= 1, "sync.max_skipped", "must be >= 1")
    _require(0.001 <= s.timeout_s <= MAX_TIMEOUT_S, "sync.timeout_s", TIMEOUT_RANGE)
    _require(s.node_size >= 0, "sync.node_size", "must be >= 0 (0: the nodes torchrun laid out)")
    _require(s.period >= 1, "sync.period", "must be >= 1")
    _require(s.powersgd_rank >= 1, "sync.powersgd_rank", "must be >= 1")
    _require(
        s.powersgd_start >= 2,
        "sync.powersgd_start",
        "must be >= 2 (torch's PowerSGD with error feedback needs two plain updates)",
    )
    _require(
        not (s.strategy.startswith("ddp") and tr.rollout == "onepass"),
        "sync.strategy",
        f"{s.strategy} needs train.rollout=native or twopass: DDP reduces once per forward, "
        "onepass steps many",
    )
    _check_affinity(cfg.cpu.affinity)
    _require(cfg.cpu.threads >= 0, "cpu.threads", "must be >= 0 (0: one per core of the rank's block)")
    _require(0 <= cfg.tracker.port <= 65535, "tracker.port", "must lie in [0, 65535]")
    _require(0 < cfg.tracker.smoothing <= 1, "tracker.smoothing", "must lie in (0, 1]")
    _require(0.001 <= cfg.tracker.timeout_s <= MAX_TIMEOUT_S, "tracker.timeout_s", TIMEOUT_RANGE)
    _require(cfg.checkpoint.every >= 1, "checkpoint.every", "must be >= 1")
    _require(cfg.log.every >= 1, "log.every", "must be >= 1")
    _require(cfg.log.histograms_every >= 0, "log.histograms_every", "must be >= 0 (0: never)")
    _choice(cfg.log.progress, "log.progress", PROGRESS)
    _require(cfg.eval.every >= 0, "eval.every", "must be >= 0 (0: never)")
    _require(cfg.eval.episodes >= 2, "eval.episodes", "must be >= 2")


def _check_affinity(affinity: Any) -> None:
    if affinity in ("auto", "none"):
        return
    ok = (
        isinstance(affinity, (list, tuple))
        and affinity
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in affinity)
    )
    _require(bool(ok), "cpu.affinity", f"must be auto, none or a list of core numbers (got {affinity!r})")


def check_world(cfg: Config, world_size: int) -> None:
    """Each rank rolls out an equal share of every rollout round."""
    _require(
        cfg.train.batch_episodes % world_size == 0,
        "train.batch_episodes",
        f"{cfg.train.batch_episodes} episodes do not split evenly over {world_size} ranks",
    )
    share, k = cfg.train.batch_episodes // world_size, cfg.train.episodes_per_task
    _require(
        share % k == 0,
        "train.episodes_per_task",
        f"each of the {world_size} rank(s) plays {share} episodes a rollout, which groups of {k} "
        "episodes per task do not fill evenly",
    )


# Bytes one agent step of one episode holds during an update, per hidden unit, per action and fixed:
# the LSTM keeps its 4 gates, c, h and tanh(c) for the backward pass and as much again for their
# gradients, and the native backward its [x, h_prev] rows (15 floats a unit, measured against both
# the native and the twopass rollout: README, "Fault tolerance"); logits, probabilities and their
# gradients take 4 floats an action; inputs, noise, rewards and values the rest. The weights are
# held 5 times over: parameters, gradients, the flat gradient buffer and two optimizer moments.
STEP_BYTES_PER_UNIT, STEP_BYTES_PER_ACTION, STEP_BYTES_FIXED = 4 * 15, 4 * 4, 4 * 24
BASE_BYTES = 400 * 2**20  # a rank's own footprint before any rollout: torch, gloo, the agent


def rollout_bytes(cfg: Config, world_size: int) -> int:
    """Estimated peak memory of one rank's update (rollout, replay and backward), in bytes."""
    hidden, actions = cfg.agent.hidden, cfg.task.arms
    inputs = actions + 4  # observation (at most 2), previous action, reward, trial index
    weights = 4 * hidden * (hidden + inputs + 2) + (actions + 1) * (hidden + 1)
    share = cfg.train.batch_episodes // world_size
    per_step = STEP_BYTES_PER_UNIT * hidden + STEP_BYTES_PER_ACTION * actions + STEP_BYTES_FIXED
    return BASE_BYTES + 5 * 4 * weights + share * cfg.task.trials * per_step


def check_memory(cfg: Config, world_size: int, local_ranks: int, available: int) -> None:
    """Refuse, before anything is allocated, a configuration whose ranks on this node would need more
    memory together than the node has available."""
    need = rollout_bytes(cfg, world_size)
    gib = lambda n: f"{n / 2**30:.1f} GiB"
    _require(
        need * local_ranks <= available,
        "train.batch_episodes",
        f"{cfg.train.batch_episodes} episodes of {cfg.task.trials} trials over {world_size} rank(s) "
        f"need about {gib(need)} per rank ({gib(need * local_ranks)} for the {local_ranks} on this "
        f"node), but {gib(available)} is available; use fewer episodes per rollout "
        "(sync.accumulate keeps the update's size) or more ranks on more nodes",
    )
