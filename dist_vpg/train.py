"""Train the meta-RL agent with A2C over ranks launched by torchrun (or in one plain process).

torchrun --nproc_per_node N -m dist_vpg.train --config configs/FILE.yaml key=value ...
python -m dist_vpg.train --config configs/smoke.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import torch

from dist_vpg import (
    batching,
    checkpoint,
    config,
    curriculum,
    distributed,
    files,
    memory,
    native,
    noise,
    pinning,
    plots,
    resume,
    sync,
    tracker,
)
from dist_vpg.agent import Agent
from dist_vpg.averaging import WeightAverage
from dist_vpg.cli import Parser, at_least, refuse
from dist_vpg.config import Config, ConfigError, TrainConfig
from dist_vpg.gradient_noise import NoiseScale
from dist_vpg.metrics import Timings, Window
from dist_vpg.rollout import Rollout, agent_for, agreed_mode, fusable, rollout_loss
from dist_vpg.run_log import Board, log_line, noise_scale_text, scalar_groups
from dist_vpg.tasks import Task, make_task
from dist_vpg.validation import Validation

STOP_POLL = 10  # updates between the ranks' agreement on whether a signal asked them to stop


def main(cfg: Config) -> dict:
    """Run one training job on this rank; returns the run summary (the same on every rank)."""
    world = distributed.world_from_env()
    config.check_world(cfg, world.world_size)
    memory.check_memory(cfg, world.world_size, world.local_world_size, psutil.virtual_memory().available)
    plan = pinning.plan(world.local_rank, world.local_world_size, cfg.cpu.affinity, cfg.cpu.threads)
    pinning.apply(plan)  # before the first torch operation
    if cfg.cpu.retain_freed:
        pinning.retain_freed_memory()
    # The tracker's server is forked by rank 0 before gloo starts threads of its own.
    main_tracker = world.is_main and cfg.tracker.enabled
    server = tracker.start_for_run(cfg.tracker) if main_tracker else tracker.ServerStart()
    try:
        distributed.init(world, cfg.sync.timeout_s)
        with resume.StopRequest() as stop:
            return train(cfg, world, plan, server, stop)
    finally:
        distributed.shutdown()
        server.shutdown()


def train(
    cfg: Config,
    world: distributed.World,
    plan: pinning.Plan,
    server: tracker.ServerStart,
    stop: resume.StopRequest,
) -> dict:
    """Set the run up, then each update: its rollouts and step, and the work due after it."""
    run = setup(cfg, world, plan, server)
    with tracker.timeouts_named(run.shared, world, cfg.sync.timeout_s):
        for update in range(run.start, cfg.train.updates):
            result, hyper = one_update(run, update)
            if after_update(run, update + 1, result, hyper, stop):
                break
    return finish(run)


@dataclass
class Run:
    """One rank's training job: what setup() builds and every update works with."""

    cfg: Config  # what this update trains with: the run's configuration, or its curriculum stage's
    world: distributed.World
    run_dir: Path
    board: Board
    shared: tracker.TrackerClient | tracker.NoTracker  # the job's reward tracker
    task: Task
    mode: str  # the rollout: native or torch, agreed by every rank
    agent: Agent
    optimizer: torch.optim.Optimizer
    strategy: sync.Strategy
    compared_optimizer: torch.optim.Optimizer | None  # checked across ranks beside the weights
    model: torch.nn.Module  # the agent as the strategy wraps it
    average: WeightAverage | None
    batches: batching.BatchPlan
    window: Window
    noise_scale: NoiseScale
    validation: Validation
    start: int  # the first update this process trains (after a resume, the checkpoint's)
    clock: float  # perf_counter() when training began; evaluation's time is added to it
    skips: sync.SkipGuard  # stops the job after too many skipped steps in a row
    zero_grads: sync.ZeroGradTrap
    run_cfg: Config  # the run's configuration (with its curriculum), as checkpoints keep it
    stages: list[curriculum.Stage]  # [] for a run without a curriculum
    position: curriculum.Position  # the stage being trained
    timings: Timings = field(default_factory=Timings)
    # the native update's one call, where no strategy reduces inside backward (DDP's hooks need
    # autograd): rollout() uses it for the rollouts it can take (rollout.fusable)
    fused: native.Update | None = None
    stopped_by: int | None = None  # the update after which a signal stopped the job
    scale: dict | None = None  # the noise scale's last report


def setup(cfg: Config, world: distributed.World, plan: pinning.Plan, server: tracker.ServerStart) -> Run:
    """Everything a rank trains with. Rank 0 alone touches the run directory and reads the checkpoint
    to resume from; every rank learns the outcome (other nodes may not share rank 0's disk)."""
    begin = distributed.decided_by_main(world, lambda: resume.prepare_run_dir(cfg), resume.START_ERRORS)
    board = Board(begin.run_dir, cfg.log, cfg.train.updates, enabled=world.is_main)
    for line in pinning.gather_plans(plan, world) + [f"warning: {w}" for w in begin.warnings]:
        board.say(f"dist_vpg: {line}")
    shared = tracker.connect(cfg.tracker, world, server, board.say)

    stages = curriculum.stages(cfg.curriculum)
    resumed = begin.resumed.get("curriculum") if begin.resumed and stages else None
    position = curriculum.Position.from_state(resumed)
    run_cfg, cfg = cfg, config.at_stage(cfg, stages[position.index]) if stages else cfg
    torch.manual_seed(cfg.seed)
    task = make_task(cfg.task)
    mode = agreed_mode(cfg.train.rollout, task, world, board.say, cfg.agent.cell)
    agent = agent_for(cfg, task)
    optimizer = make_optimizer(cfg, agent, native_step=mode == "native")
    start, train_s = starting_point(cfg, world, begin, agent, optimizer, shared, board.say)
    strategy = sync.make_strategy(cfg.sync.strategy, agent, cfg.sync)
    compared_optimizer = optimizer if strategy.owns_optimizer_everywhere else None
    sync.broadcast_initial(agent, compared_optimizer)
    model = strategy.wrap()
    average = WeightAverage(agent, cfg.train.average) if cfg.train.average else None
    if average is not None and begin.resumed is not None and "average" in begin.resumed:
        average.load_state_dict(begin.resumed["average"], begin.resumed.get("average_updates"))

    batches = batching.plan(cfg, world.world_size, world.rank)
    if batches.follow is not None:
        if begin.resumed is not None and "batch_schedule" in begin.resumed:
            batches.follow.load_state_dict(begin.resumed["batch_schedule"], start)
    before = batches.episodes_before(start)
    window = Window((before, before * task.trials))
    noise_scale = NoiseScale(
        batches.rollout_share, world.world_size, cfg.log.noise_scale_decay,
        per_rank=strategy.reduces_in_backward, most_rounds=batches.rounds_final * batches.split,
        unavailable=strategy.noise_scale_unavailable,
    )  # fmt: skip
    if noise_scale.unavailable:
        board.say(f"dist_vpg: gradient noise scale not measured: {noise_scale.unavailable}")
    validation = Validation(
        cfg, task, world, begin.run_dir, board, batches, position.index + 1 if stages else None
    )
    validation.forget_after(start)
    run = Run(
        cfg, world, begin.run_dir, board, shared, task, mode, agent, optimizer, strategy,
        compared_optimizer, model, average, batches, window, noise_scale, validation, start,
        clock=time.perf_counter() - train_s, skips=sync.SkipGuard(cfg.sync.max_skipped),
        zero_grads=sync.ZeroGradTrap(board.say), run_cfg=run_cfg, stages=stages, position=position,
        fused=native.Update(agent) if mode == "native" and not strategy.reduces_in_backward else None,
    )  # fmt: skip
    announce(run)
    return run


def starting_point(cfg, world, begin: resume.RunStart, agent, optimizer, shared, say) -> tuple[int, float]:
    """Load what the run starts from (a checkpoint to resume, or train.init_from's weights) into the
    agent and optimizer; returns the first update to train and the training seconds already spent."""
    if begin.initial is not None and begin.resumed is None:
        agent.load_state_dict(begin.initial)
        say(f"dist_vpg: starting from the weights of {cfg.train.init_from}")
    if begin.resumed is None:
        return 0, 0.0
    # One rank restores the one tracker; the collectives that follow keep reports until it has.
    start = resume.restore(begin.resumed, agent, optimizer, shared if world.is_main else None)
    say(f"dist_vpg: resuming from {begin.resumed['path']} (update {start})")
    return start, begin.resumed.get("train_s", 0.0)


def announce(run: Run) -> None:
    tr, batches = run.cfg.train, run.batches
    run.board.say(
        f"dist_vpg: {run.world.world_size} rank(s), {run.mode} rollout, sync {run.strategy.name}, "
        f"{tr.updates} updates of {batches.describe()}; run dir {run.run_dir}"
    )
    if batches.lr_factor != 1:
        run.board.say(f"dist_vpg: weak scaling: the lr times {batches.lr_factor:.4g} ({tr.lr_scaling} rule)")
    if run.stages:
        announce_stage(run)


def announce_stage(run: Run) -> None:
    stage, at = run.stages[run.position.index], run.position
    run.board.say(
        f"dist_vpg: curriculum stage {at.index + 1} of {len(run.stages)} from update {at.start}: "
        f"{stage.describe()}"
    )


def one_update(run: Run, update: int) -> tuple[sync.StepResult, dict[str, float]]:
    """Update `update` (from 0): the rollouts and backward passes of its accumulation rounds, the
    strategy's reduce and step, the weights' average and the tracker's report. Returns the step's
    result and the scheduled lr, entropy weight and discount."""
    tr, timings = run.cfg.train, run.timings
    run.optimizer.zero_grad(set_to_none=False)
    hyper = scheduled(tr, update - run.position.start, stage_updates(run), run.batches.lr_factor)
    for group in run.optimizer.param_groups:
        group["lr"] = hyper["lr"]
    rollouts, follow = run.batches.rollouts(update), run.batches.follow
    peek = run.world.is_main and (run.run_dir / plots.PEEK_FILE).exists()
    played_episodes, played_return = 0, 0.0
    for k in range(rollouts):
        with timings.phase("rollout"):
            batch, loss, in_grad = rollout(run, update, k, rollouts, hyper)
        # Only the last backward of an accumulation may start DDP's reduction.
        with timings.phase("backward"), run.strategy.no_sync() if k + 1 < rollouts else nullcontext():
            if not in_grad:
                (loss.total / rollouts).backward()
            run.noise_scale.after_backward(run.strategy.params, k, rollouts)
            if follow is not None:
                follow.estimate.after_backward(run.strategy.params, k, rollouts)
        episodes, ret = run.window.add(batch, loss)
        played_episodes, played_return = played_episodes + episodes, played_return + ret
        if peek and k == 0:
            plots.save_peek(run.run_dir, batch, update + 1, run.board.say)
    if run.cfg.sync.measure_wait:
        with timings.phase("sync_wait"):
            torch.distributed.barrier()
    with timings.phase("step"):
        result = run.strategy.step(run.optimizer, tr.max_grad_norm)
    timings.add("sync", result.sync_s)
    run.noise_scale.after_step(result.grad_norm, rollouts, run.strategy.local_sq_norm())
    if follow is not None:
        with timings.phase("follow_noise"):
            follow_noise(run, update, result.grad_norm)
    if run.average is not None and result.applied:
        run.average.update(run.agent)
    run.skips.record(result.applied)  # raises on every rank alike after too many in a row
    with timings.phase("tracker"):
        run.shared.report(run.world.rank, update + 1, played_episodes, played_return)
    return result, hyper


def follow_noise(run: Run, update: int, grad_norm: float) -> None:
    """Measure update `update`'s noise scale from its halves (a collective on more than one rank)
    and let the batch schedule that follows it grow the rounds, saying so."""
    batches = run.batches
    grown = batches.follow.after_step(update, grad_norm, batches.round_episodes)
    if grown is not None:
        low = batches.follow.estimate.averages.figures()["episodes_low"]
        run.board.say(
            f"dist_vpg: the batch grows to {grown * batches.round_episodes} episodes from update "
            f"{update + 2} (the noise scale at least {low:,.0f} episodes)"
        )


def scheduled(tr: TrainConfig, update: int, updates: int, lr_factor: float) -> dict[str, float]:
    """The lr, entropy weight and discount at update `update` of `updates` (the run's, or its
    curriculum stage's), each linear from its start to its final."""
    return dict(
        lr=linear_schedule(tr.lr, tr.lr_final, update, updates) * lr_factor,
        beta_e=linear_schedule(tr.beta_e, tr.beta_e_final, update, updates),
        gamma=linear_schedule(tr.gamma, tr.gamma_final, update, updates),
    )


def stage_updates(run: Run) -> int:
    """The updates the schedules of the stage being trained run over: its most updates, or for the
    last stage (a run without a curriculum: its only one) the rest of the run."""
    stage = run.stages[run.position.index] if run.stages else None
    if stage is not None and stage.updates is not None:
        return stage.updates
    return run.cfg.train.updates - run.position.start


def rollout(run: Run, update: int, k: int, rollouts: int, hyper: dict[str, float]):
    """This rank's episodes of rollout k of the update's `rollouts` played, their loss, and whether
    1 / rollouts of its gradient is in .grad already (the native update's one call, where nothing
    needs autograd): (batch, loss, in_grad)."""
    cfg, tr, task = run.cfg, run.cfg.train, run.task
    ids = episode_ids(run.world.rank, k, rollouts, run.batches.rollout_share)
    draws = noise.draw(
        cfg.seed,
        noise.TRAIN,
        update,
        ids,
        task.trials,
        task.episode_draws,
        task.trial_draws,
        tr.episodes_per_task,
    )
    if tr.mirror:
        draws = noise.with_mirrors(draws, task.mirror)
    loss_args = dict(
        lam=tr.gae_lambda, beta_v=tr.beta_v, value_scale=tr.value_scale,
        episodes_per_task=tr.episodes_per_task, gamma=hyper["gamma"], beta_e=hyper["beta_e"],
    )  # fmt: skip
    if run.fused is not None and fusable(run.agent, run.mode, tr.signal):
        scale = float(np.float32(1) / np.float32(rollouts))  # as autograd scales loss.total / rollouts
        done = run.fused(task, draws, cfg.task.trial_input, tr.signal, scale, **loss_args)
        return Rollout(done.inputs, done.actions, done.rewards, done.regrets, None, None), done.loss, True
    batch, loss = rollout_loss(
        run.agent, task, draws, run.mode, cfg.task.trial_input, tr.signal, loss_args, replay=run.model
    )
    return batch, loss, False


def due(done: int, every: int, last: int | None) -> bool:
    """Whether work done every `every` updates (never when 0) falls after update `done`; at `last`
    too, the final update, unless it is None."""
    return every > 0 and (done % every == 0 or done == last)


def after_update(
    run: Run, done: int, result: sync.StepResult, hyper: dict[str, float], stop: resume.StopRequest
) -> bool:
    """The work due after update `done`: a stop asked by a signal, the ranks' divergence check, the
    log, an evaluation and a checkpoint. Returns whether training stops here."""
    cfg, last = run.cfg, run.cfg.train.updates
    if due(done, STOP_POLL, None) and distributed.all_sum([float(stop.requested)])[0] > 0:
        run.stopped_by = done
    check = due(done, cfg.sync.check_every, last)
    validate = due(done, cfg.eval.every, last)
    save = due(done, cfg.checkpoint.every, last) or run.stopped_by is not None or stage_full(run, done)
    if check or validate or save:
        run.strategy.agree()  # one agreement: the weights read below are the job's
    if check:
        sync.check_in_sync(run.agent, run.compared_optimizer)
    report(run, done, result, hyper)
    if validate:
        evaluation_started = time.perf_counter()
        train_s = evaluation_started - run.clock
        run.validation.run(run.average.model if run.average else run.agent, done, train_s)
        run.clock += time.perf_counter() - evaluation_started  # training time leaves evaluation out
    ended_by = stage_ended_by(run, done, validate)
    if ended_by:  # the checkpoint below is then the next stage's first, where a resumed run starts it
        run.position = run.position.next(done, ended_by)
        enter_stage(run)
    if save or ended_by:
        files.written_by_main(
            run.world, lambda: save_checkpoint(run, done)
        )  # every rank stops alike if it fails
    if run.stopped_by is not None:
        run.board.say(
            f"dist_vpg: stopped by a signal after update {done}; checkpoint saved, "
            "go on with train.resume=auto"
        )
    return run.stopped_by is not None


def stage_full(run: Run, done: int) -> bool:
    """Whether update `done` is the last the curriculum stage being trained may take."""
    stage = run.stages[run.position.index] if run.stages else None
    return stage is not None and stage.updates is not None and done == run.position.start + stage.updates


def stage_ended_by(run: Run, done: int, validated: bool) -> str | None:
    """Why the curriculum stage being trained ends after update `done`: "level" (the validation just
    made reached its until_regret), "updates" (its last update), or None (it goes on). The
    validation's figures are the same on every rank, so every rank decides alike."""
    stage = run.stages[run.position.index] if run.stages else None
    if stage is None or stage.updates is None or done == run.cfg.train.updates:
        return None
    level = stage.until_regret
    if validated and level is not None and run.validation.last["regret"] <= level:
        return "level"
    return "updates" if stage_full(run, done) else None


def stage_number(run: Run) -> int | None:
    """The stage being trained, from 1, as eval.csv, the log and summary.json count; None without a
    curriculum."""
    return run.position.index + 1 if run.stages else None


def enter_stage(run: Run) -> None:
    """Train the curriculum stage run.position names from here on: its configuration, its task (and
    its periodic validation), a weights' average started afresh; the weights and the optimizer's
    state go on."""
    cfg = config.at_stage(run.run_cfg, run.stages[run.position.index])
    run.cfg, run.task = cfg, make_task(cfg.task)
    run.average = WeightAverage(run.agent, cfg.train.average) if cfg.train.average else None
    run.validation = Validation(
        cfg, run.task, run.world, run.run_dir, run.board, run.batches, stage_number(run)
    )
    announce_stage(run)


def report(run: Run, done: int, result: sync.StepResult, hyper: dict[str, float]) -> None:
    """The log line and TensorBoard's scalars (every log.every updates), histograms and the progress."""
    cfg, tr, board = run.cfg, run.cfg.train, run.board
    line, postfix = "", {}
    if due(done, cfg.log.every, tr.updates):
        figures = run.window.report(run.task.trials)  # a collective: every rank takes part
        run.scale = scale = run.noise_scale.report()  # a collective too, where measured
        snap = run.shared.snapshot() if run.world.is_main else None
        ema = snap["ema_return"] if snap else figures["return"]
        stage = f"{stage_number(run)}/{len(run.stages)}" if run.stages else ""
        line = log_line(done, tr.updates, figures, ema, run.skips.total, run.window, scale, stage)
        postfix = {"steps/s": f"{figures['steps_per_s']:,.0f}", "ema return": f"{ema:.2f}"}
        if scale:
            postfix["noise scale"] = noise_scale_text(scale)
        schedule = hyper | {"batch_episodes": run.batches.episodes(done - 1)}  # the update's, all ranks
        groups = scalar_groups(
            figures, snap, run.timings.window_medians(), result, tr, schedule, run.strategy.name,
            run.skips.total, run.task.regret_chart, scale,
        )  # fmt: skip
        if run.stages:
            groups["curriculum"] = {"stage": stage_number(run)}
        board.scalars(done, groups)
        if run.world.is_main:
            run.zero_grads.check(run.agent, done)
    if due(done, cfg.log.histograms_every, None):
        board.histograms(done, run.agent)
    board.progress(done, line, postfix)


def save_checkpoint(run: Run, done: int) -> None:
    """Rank 0: the training state after update `done`."""
    average = run.average
    checkpoint.save_training_state(
        run.run_dir, run.run_cfg, done, run.agent, run.optimizer, run.shared.state_dict(),
        time.perf_counter() - run.clock, average.state_dict() if average else None,
        average.count if average else 0, run.position.state_dict() if run.stages else None,
        run.batches.follow.state_dict() if run.batches.follow else None,
    )  # fmt: skip


def finish(run: Run) -> dict:
    """The ranks' last agreement, and the run's summary (written by rank 0 to summary.json)."""
    run.strategy.agree()
    tr, world = run.cfg.train, run.world
    summary = run.window.summary()
    summary.update(
        run_dir=str(run.run_dir),
        strategy=run.strategy.name,
        world_size=world.world_size,
        updates=tr.updates,
        resumed_from=run.start,
        last_update=run.stopped_by or tr.updates,
        skipped_updates=run.skips.total,
        phase_median_s=run.timings.medians(),
        noise_scale=run.noise_scale.describe(run.scale),
        batch_schedule=run.batches.summary(),
        last_eval=run.validation.last,
        tracker=run.shared.snapshot() if world.is_main else None,
        params_crc32=sync.checksum(run.agent, None),
    )
    if run.stages:  # each stage's updates and how it ended, the last one still going at the end
        at, end = run.position, run.stopped_by or tr.updates
        summary["curriculum"] = [*at.history, {"stage": at.index + 1, "start": at.start, "end": end}]
    if world.is_main:
        files.atomic_write(run.run_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    run.board.say(f"dist_vpg: done; checkpoints, summary.json and TensorBoard logs (tb/) in {run.run_dir}")
    run.board.close()
    return summary


def episode_ids(rank: int, k: int, accumulate: int, share: int) -> np.ndarray:
    """Global indices of the episodes rank `rank` plays in rollout k of an update. The update's
    batch_episodes * accumulate episodes are split into contiguous blocks, one per rank, each cut into
    `accumulate` rollouts: any world size and accumulation covers the same episodes."""
    first = (rank * accumulate + k) * share
    return np.arange(first, first + share)


def make_optimizer(cfg: Config, agent: Agent, native_step: bool = False) -> torch.optim.Optimizer:
    """The optimizer of cfg.train.optimizer. With `native_step` (the native rollout), RMSprop clips
    and steps in one C pass (native.RMSprop: the same state, the same arithmetic)."""
    if cfg.train.optimizer == "adam":
        return torch.optim.Adam(agent.parameters(), lr=cfg.train.lr)
    if cfg.train.optimizer == "sgd":  # plain SGD: the reference under which local_sgd is exact
        return torch.optim.SGD(agent.parameters(), lr=cfg.train.lr)
    rmsprop = native.RMSprop if native_step else torch.optim.RMSprop
    return rmsprop(agent.parameters(), lr=cfg.train.lr, alpha=0.99, eps=1e-5)


def linear_schedule(start: float, final: float, update: int, updates: int) -> float:
    """start at the first update, final at the last, linear between; constant when final < 0."""
    if final < 0 or updates <= 1:
        return start
    return start + update / (updates - 1) * (final - start)


def parse_args(argv: list[str]):
    parser = Parser("dist_vpg.train", __doc__, epilog=config.settings_help())
    parser.add_argument(
        "--config",
        help="YAML file in configs/ (default: the dataclass defaults, "
        "which are configs/bandit_independent.yaml)",
    )
    parser.add_argument(
        "--show-config", action="store_true", help="print the configuration this run would use, and exit"
    )
    # launch.sh: check the configuration against the world it will start (ranks on this node, and
    # ranks in all), before torchrun starts, so that a refusal is one line and not torchrun's report
    parser.add_argument("--preflight", nargs=2, type=at_least(1), help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.lr=0.001 seed=3")
    return parser.parse_intermixed_args(argv)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config.load(args.config, args.overrides)
        if args.show_config:
            print(config.to_yaml(cfg), end="")
            return 0
        if args.preflight:
            local_ranks, world_size = args.preflight
            config.check_world(cfg, world_size)
            memory.check_memory(cfg, world_size, local_ranks, psutil.virtual_memory().available)
            return 0
        main(cfg)
    except (
        ConfigError,
        tracker.TrackerError,
        checkpoint.CheckpointError,
        distributed.CollectiveTimeout,
        files.WriteError,
    ) as e:
        return refuse("dist_vpg.train", f"{'config error: ' if isinstance(e, ConfigError) else ''}{e}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
