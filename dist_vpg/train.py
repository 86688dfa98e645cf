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
from pathlib import Path

import numpy as np
import psutil
import torch

from dist_vpg import (
    batching,
    checkpoint,
    config,
    distributed,
    files,
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
from dist_vpg.board import Board, log_line, noise_scale_text, scalar_groups
from dist_vpg.cli import Parser, at_least, refuse
from dist_vpg.config import Config, ConfigError
from dist_vpg.gradient_noise import NoiseScale
from dist_vpg.metrics import Timings, Window
from dist_vpg.rollout import agreed_mode, make_agent, rollout_loss
from dist_vpg.tasks import make_task
from dist_vpg.validation import Validation

STOP_POLL = 10  # updates between the ranks' agreement on whether a signal asked them to stop


def main(cfg: Config) -> dict:
    """Run one training job on this rank; returns the run summary (the same on every rank)."""
    world = distributed.world_from_env()
    config.check_world(cfg, world.world_size)
    config.check_memory(cfg, world.world_size, world.local_world_size, psutil.virtual_memory().available)
    plan = pinning.plan(world.local_rank, world.local_world_size, cfg.cpu.affinity, cfg.cpu.threads)
    pinning.apply(plan)  # before the first torch operation
    if cfg.cpu.retain_freed:
        pinning.retain_freed_memory()
    # The tracker's server is forked by rank 0 before gloo starts threads of its own.
    server = tracker.start_for_run(cfg.tracker) if world.is_main and cfg.tracker.enabled else None
    try:
        distributed.init(world, cfg.sync.timeout_s)
        with resume.StopRequest() as stop:
            return train(cfg, world, plan, server, stop)
    finally:
        distributed.shutdown()
        if isinstance(server, tuple):  # (manager, address, authkey); a string is a failed start
            server[0].shutdown()


def train(
    cfg: Config, world: distributed.World, plan: pinning.Plan, server, stop: resume.StopRequest
) -> dict:
    # Rank 0 alone touches the run directory and reads the checkpoint to resume from; every rank
    # learns the outcome (the checkpoint's state too: other nodes may not share rank 0's disk).
    outcome = distributed.broadcast_object(resume.prepare_run_dir(cfg) if world.is_main else None)
    if isinstance(outcome, Exception):
        raise outcome
    run_dir, resumed, warnings, initial = Path(outcome[0]), outcome[1], outcome[2], outcome[3]
    board = Board(run_dir, cfg.log, cfg.train.updates, enabled=world.is_main)
    for line in pinning.gather_plans(plan, world) + [f"warning: {w}" for w in warnings]:
        board.say(f"dist_vpg: {line}")
    shared = tracker.connect(cfg.tracker, world, server, board.say)

    torch.manual_seed(cfg.seed)
    task = make_task(cfg.task)
    mode = agreed_mode(cfg.train.rollout, task, world, board.say)
    agent = make_agent(task, cfg.task.trial_input, cfg.agent.hidden, cfg.agent.privileged_critic)
    optimizer = make_optimizer(cfg, agent, native_step=mode == "native")
    start, train_s = 0, 0.0
    if initial is not None and resumed is None:
        agent.load_state_dict(initial)
        board.say(f"dist_vpg: starting from the weights of {cfg.train.init_from}")
    if resumed is not None:
        # One rank restores the one tracker; the collectives below keep reports until it has.
        restored_tracker = shared if world.is_main else None
        start, train_s = (
            resume.restore(resumed, agent, optimizer, restored_tracker),
            resumed.get("train_s", 0.0),
        )
        board.say(f"dist_vpg: resuming from {resumed['path']} (update {start})")
    strategy = sync.make_strategy(cfg.sync.strategy, agent, cfg.sync)
    compared_optimizer = optimizer if strategy.owns_optimizer_everywhere else None
    sync.broadcast_initial(agent, compared_optimizer)
    model = strategy.wrap()
    average = WeightAverage(agent, cfg.train.average) if cfg.train.average else None
    if average is not None and resumed is not None and "average" in resumed:
        average.load_state_dict(resumed["average"], resumed.get("average_updates"))

    tr, batches = cfg.train, batching.plan(cfg, world.world_size)
    share = batches.share  # episodes per rank per rollout
    loss_args = dict(
        lam=tr.gae_lambda,
        beta_v=tr.beta_v,
        value_scale=tr.value_scale,
        episodes_per_task=tr.episodes_per_task,
    )
    timings, window, skips = Timings(), Window(), sync.SkipGuard(cfg.sync.max_skipped)
    zero_grads = sync.ZeroGradTrap(board.say)
    noise_scale = NoiseScale(
        share, world.world_size, cfg.log.noise_scale_decay, per_rank=strategy.reduces_in_backward,
        most_rounds=batches.rounds_final, unavailable=strategy.noise_scale_unavailable,
    )  # fmt: skip
    if noise_scale.unavailable:
        board.say(f"dist_vpg: gradient noise scale not measured: {noise_scale.unavailable}")
    validation = Validation(cfg, task, world, run_dir, board, batches)
    validation.forget_after(start)
    board.say(
        f"dist_vpg: {world.world_size} rank(s), {mode} rollout, sync {strategy.name}, {tr.updates} "
        f"updates of {batches.describe()}; run dir {run_dir}"
    )
    if batches.lr_factor != 1:
        board.say(f"dist_vpg: weak scaling: the lr times {batches.lr_factor:.4g} ({tr.lr_scaling} rule)")
    clock, stopped_by, scale = time.perf_counter() - train_s, None, None

    def checkpoint_now() -> None:  # rank 0, at the update `done` the loop has reached
        checkpoint.save_training_state(
            run_dir, cfg, done, agent, optimizer, shared.state_dict(), time.perf_counter() - clock,
            average.state_dict() if average else None, average.count if average else 0,
        )  # fmt: skip

    with tracker.timeouts_named(shared, world, cfg.sync.timeout_s):
        for update in range(start, tr.updates):
            optimizer.zero_grad(set_to_none=False)
            beta_e = linear_schedule(tr.beta_e, tr.beta_e_final, update, tr.updates)
            gamma = linear_schedule(tr.gamma, tr.gamma_final, update, tr.updates)
            lr = linear_schedule(tr.lr, tr.lr_final, update, tr.updates) * batches.lr_factor
            rounds = batches.rounds(update)
            for group in optimizer.param_groups:
                group["lr"] = lr
            peek = world.is_main and (run_dir / plots.PEEK_FILE).exists()
            played_episodes, played_return = 0, 0.0
            for k in range(rounds):
                with timings.phase("rollout"):
                    ids = episode_ids(world.rank, k, rounds, share)
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
                    batch, loss = rollout_loss(
                        agent,
                        task,
                        draws,
                        mode,
                        cfg.task.trial_input,
                        tr.signal,
                        loss_args | {"gamma": gamma, "beta_e": beta_e},
                        replay=model,
                    )
                # Only the last backward of an accumulation may start DDP's reduction.
                with timings.phase("backward"), strategy.no_sync() if k + 1 < rounds else nullcontext():
                    (loss.total / rounds).backward()
                    noise_scale.after_backward(strategy.params, k, rounds)
                episodes, ret = window.add(batch, loss)
                played_episodes, played_return = played_episodes + episodes, played_return + ret
                if peek and k == 0:
                    plots.save_peek(run_dir, batch, update + 1, board.say)
            if cfg.sync.measure_wait:
                with timings.phase("sync_wait"):
                    torch.distributed.barrier()
            with timings.phase("step"):
                result = strategy.step(optimizer, tr.max_grad_norm)
            timings.add("sync", result.sync_s)
            noise_scale.after_step(result.grad_norm, rounds, strategy.local_sq_norm())
            if average is not None and result.applied:
                average.update(agent)
            skips.record(result.applied)  # raises on every rank alike after too many in a row
            done = update + 1
            with timings.phase("tracker"):
                shared.report(world.rank, done, played_episodes, played_return)

            if cfg.sync.check_every and (done % cfg.sync.check_every == 0 or done == tr.updates):
                strategy.agree()
                sync.check_in_sync(agent, compared_optimizer)
            logging_now = done % cfg.log.every == 0 or done == tr.updates
            line, postfix = "", {}
            if logging_now:
                figures = window.report(task.trials)  # a collective: every rank takes part
                scale = noise_scale.report()  # a collective too, where measured
                snap = shared.snapshot() if world.is_main else None
                phases = timings.window_medians()
                ema = snap["ema_return"] if snap else figures["return"]
                line = log_line(done, tr.updates, figures, ema, skips.total, window, scale)
                postfix = {"steps/s": f"{figures['steps_per_s']:,.0f}", "ema return": f"{ema:.2f}"}
                if scale:
                    postfix["noise scale"] = noise_scale_text(scale)
                board.scalars(
                    done,
                    scalar_groups(
                        figures,
                        snap,
                        phases,
                        result,
                        tr,
                        dict(lr=lr, beta_e=beta_e, gamma=gamma),
                        strategy.name,
                        skips.total,
                        task.regret_chart,
                        scale,
                    ),
                )
                if world.is_main:
                    zero_grads.check(agent, done)
            if cfg.log.histograms_every and done % cfg.log.histograms_every == 0:
                board.histograms(done, agent)
            board.progress(done, line, postfix)
            if validation.due(done):
                strategy.agree()
                eval_started = time.perf_counter()
                validation.run(average.model if average else agent, done, eval_started - clock)
                clock += time.perf_counter() - eval_started  # training time leaves evaluation out
            if done % STOP_POLL == 0 and distributed.all_sum([float(stop.requested)])[0] > 0:
                stopped_by = done
            if done % cfg.checkpoint.every == 0 or done == tr.updates or stopped_by:
                strategy.agree()
                files.written_by_main(world, checkpoint_now)  # every rank stops alike if it fails
            if stopped_by:
                board.say(
                    f"dist_vpg: stopped by a signal after update {done}; checkpoint saved, "
                    "go on with train.resume=auto"
                )
                break

    strategy.agree()
    summary = window.summary()
    summary.update(
        run_dir=str(run_dir),
        strategy=strategy.name,
        world_size=world.world_size,
        updates=tr.updates,
        resumed_from=start,
        last_update=stopped_by or tr.updates,
        skipped_updates=skips.total,
        phase_median_s=timings.medians(),
        noise_scale=noise_scale.describe(scale),
        last_eval=validation.last,
        tracker=shared.snapshot() if world.is_main else None,
        params_crc32=sync.checksum(agent, None),
    )
    if world.is_main:
        files.atomic_write(run_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    board.say(f"dist_vpg: done; checkpoints, summary.json and TensorBoard logs (tb/) in {run_dir}")
    board.close()
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
            config.check_memory(cfg, world_size, local_ranks, psutil.virtual_memory().available)
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
