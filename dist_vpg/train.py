"""Train the meta-RL agent with A2C over ranks launched by torchrun (or in one plain process).

torchrun --nproc_per_node N -m dist_vpg.train --config configs/FILE.yaml key=value ...
python -m dist_vpg.train --config configs/smoke.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from dist_vpg import checkpoint, config, distributed, noise, sync
from dist_vpg.agent import Agent
from dist_vpg.config import Config, ConfigError
from dist_vpg.losses import a2c_loss
from dist_vpg.rollout import input_size, rollout
from dist_vpg.tasks import make_task
from dist_vpg.timing import Timings


def main(cfg: Config) -> dict:
    """Run one training job on this rank; returns the run summary (the same on every rank)."""
    world = distributed.world_from_env()
    config.check_world(cfg, world.world_size)
    torch.set_num_threads(threads_per_rank(world.local_world_size))
    distributed.init(world, cfg.sync.timeout_s)
    try:
        return train(cfg, world)
    finally:
        distributed.shutdown()


def train(cfg: Config, world: distributed.World) -> dict:
    # Rank 0 alone touches the run directory; every rank learns the outcome, so all stop together.
    outcome = distributed.broadcast_object(prepare_run_dir(cfg) if world.is_main else None)
    if isinstance(outcome, ConfigError):
        raise outcome
    run_dir = Path(outcome)
    torch.manual_seed(cfg.seed)
    task = make_task(cfg.task)
    agent = Agent(input_size(task, cfg.task.trial_input), task.num_actions, cfg.agent.hidden)
    optimizer = make_optimizer(cfg, agent)
    strategy = sync.make_strategy(cfg.sync.strategy, agent)
    sync.broadcast_initial(agent, optimizer if strategy.owns_optimizer_everywhere else None)
    model = strategy.wrap()
    compared_optimizer = optimizer if strategy.owns_optimizer_everywhere else None

    tr, accumulate = cfg.train, cfg.sync.accumulate
    share = tr.batch_episodes // world.world_size  # episodes per rank per rollout
    loss_args = dict(gamma=tr.gamma, lam=tr.gae_lambda, beta_v=tr.beta_v)
    timings, window, skips = Timings(), Window(), sync.SkipGuard(cfg.sync.max_skipped)
    if world.is_main:
        print(
            f"dist_vpg: {world.world_size} rank(s), sync {strategy.name}, {tr.updates} updates of "
            f"{tr.batch_episodes * accumulate} episodes; run dir {run_dir}",
            flush=True,
        )
    for update in range(tr.updates):
        optimizer.zero_grad(set_to_none=False)
        beta_e = linear_schedule(tr.beta_e, tr.beta_e_final, update, tr.updates)
        for group in optimizer.param_groups:
            group["lr"] = linear_schedule(tr.lr, tr.lr_final, update, tr.updates)
        for k in range(accumulate):
            with timings.phase("rollout"):
                ids = episode_ids(world.rank, k, accumulate, share)
                draws = noise.draw(
                    cfg.seed, noise.TRAIN, update, ids, task.trials, task.episode_draws, task.trial_draws
                )
                batch = rollout(agent, task, draws, tr.rollout, cfg.task.trial_input, replay=model)
                loss = a2c_loss(
                    batch.logits, batch.values, batch.actions, batch.rewards, **loss_args, beta_e=beta_e
                )
            # Only the last backward of an accumulation may start DDP's reduction.
            with timings.phase("backward"), strategy.no_sync() if k + 1 < accumulate else nullcontext():
                (loss.total / accumulate).backward()
            window.add(batch, loss)
        with timings.phase("step"):
            result = strategy.step(optimizer, tr.max_grad_norm)
        timings.add("sync", result.sync_s)
        skips.record(result.applied)  # raises on every rank alike after too many in a row

        done = update + 1
        if cfg.sync.check_every and (done % cfg.sync.check_every == 0 or done == tr.updates):
            sync.check_in_sync(agent, compared_optimizer)
        if done % cfg.log.every == 0 or done == tr.updates:
            line = window.report(done, tr.updates, task.trials, skips.total)
            if world.is_main:
                print(line, flush=True)
        if world.is_main and (done % cfg.checkpoint.every == 0 or done == tr.updates):
            save_checkpoint(run_dir, cfg, done, agent, optimizer)

    summary = window.summary(timings, skips.total, task.trials)
    summary.update(
        run_dir=str(run_dir),
        strategy=strategy.name,
        world_size=world.world_size,
        updates=tr.updates,
        params_crc32=sync.checksum(agent, None),
    )
    if world.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"dist_vpg: done; checkpoints and summary.json in {run_dir}", flush=True)
    return summary


def episode_ids(rank: int, k: int, accumulate: int, share: int) -> np.ndarray:
    """Global indices of the episodes rank `rank` plays in rollout k of an update. The update's
    batch_episodes * accumulate episodes are split into contiguous blocks, one per rank, each cut into
    `accumulate` rollouts: any world size and accumulation covers the same episodes."""
    first = (rank * accumulate + k) * share
    return np.arange(first, first + share)


def threads_per_rank(local_ranks: int) -> int:
    """OMP_NUM_THREADS when set; else the cores this process may use, shared evenly among the
    ranks on this node."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, local_ranks))


def make_optimizer(cfg: Config, agent: Agent) -> torch.optim.Optimizer:
    if cfg.train.optimizer == "adam":
        return torch.optim.Adam(agent.parameters(), lr=cfg.train.lr)
    return torch.optim.RMSprop(agent.parameters(), lr=cfg.train.lr, alpha=0.99, eps=1e-5)


def linear_schedule(start: float, final: float, update: int, updates: int) -> float:
    """start at the first update, final at the last, linear between; constant when final < 0."""
    if final < 0 or updates <= 1:
        return start
    return start + update / (updates - 1) * (final - start)


def prepare_run_dir(cfg: Config) -> str | ConfigError:
    """Create the run directory and write the resolved config; refuse one that holds a run."""
    run_dir = Path(cfg.run_dir or time.strftime("runs/%Y%m%d-%H%M%S"))
    if checkpoint.existing(run_dir):
        return ConfigError(f"run_dir: {run_dir} already holds checkpoints; choose another run_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = config.replace(cfg, run_dir=str(run_dir))
    (run_dir / "config.yaml").write_text(config.to_yaml(resolved))
    return str(run_dir)


def save_checkpoint(
    run_dir: Path, cfg: Config, update: int, agent: Agent, optimizer: torch.optim.Optimizer
) -> Path:
    return checkpoint.save(
        run_dir,
        {
            "update": update,
            "model": agent.state_dict(),
            "optimizer": optimizer.state_dict(),
            "config": config.to_dict(cfg),
            "rng": {"torch": torch.get_rng_state()},
        },
    )


class Window:
    """Per-rank sums since the last report; `report` turns them into global figures."""

    def __init__(self):
        self.start = time.perf_counter()
        self.first_start = self.start
        self.sums = np.zeros(5)  # episodes, return, regret, entropy, steps
        self.totals = np.zeros(5)
        self.last = {}

    def add(self, batch, loss) -> None:
        episodes = batch.rewards.shape[1]
        self.sums += [
            episodes,
            batch.rewards.sum().item(),
            batch.regrets.sum().item(),
            loss.entropy.item() * episodes,
            batch.rewards.numel(),
        ]

    def report(self, done: int, updates: int, trials: int, skipped: int) -> str:
        episodes, ret, regret, entropy, steps = distributed.all_sum(self.sums.tolist())
        now = time.perf_counter()
        self.totals += [episodes, ret, regret, entropy, steps]
        self.last = {
            "return": ret / episodes,
            "regret": regret / episodes,
            "entropy_per_trial": entropy / episodes / trials,
            "steps_per_s": steps / (now - self.start),
        }
        self.sums[:] = 0
        self.start = now
        return (
            f"update {done}/{updates} | episodes {int(self.totals[0]):,} | "
            f"return {self.last['return']:.2f} | regret {self.last['regret']:.2f} | "
            f"entropy {self.last['entropy_per_trial']:.3f} | "
            f"{self.last['steps_per_s']:,.0f} steps/s" + (f" | skipped {skipped}" if skipped else "")
        )

    def summary(self, timings: Timings, skipped: int, trials: int) -> dict:
        wall = time.perf_counter() - self.first_start
        return {
            "episodes": int(self.totals[0]),
            "agent_steps": int(self.totals[4]),
            "wall_s": wall,
            "steps_per_s": self.totals[4] / wall,
            "final": self.last,
            "skipped_updates": skipped,
            "phase_median_s": timings.medians(),
        }


def parse_args(argv: list[str]) -> tuple[str | None, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m dist_vpg.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        help="YAML file in configs/ (default: the dataclass defaults, "
        "which are configs/bandit_independent.yaml)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.lr=0.001 seed=3")
    args = parser.parse_args(argv)
    return args.config, args.overrides


def cli(argv: list[str] | None = None) -> int:
    path, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config.load(path, overrides)
        main(cfg)
    except ConfigError as e:
        if distributed.world_from_env().is_main:
            print(f"dist_vpg.train: config error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
