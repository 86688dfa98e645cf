"""Time to learn: how long a bandit config takes to reach each regret target, old settings beside new.

    python benchmarks/bench_learning.py [--configs A.yaml "B.yaml key=value"] [--ranks 1 2]
                                        [--updates 8000] [--eval-every 100] [--eval-episodes 1000]
                                        [--targets 2.78 2.0 1.85] [--quick]

Each point is a real training job under torchrun (one thread per rank), evaluated with frozen weights
every --eval-every updates on fresh episodes (dist_vpg.validation, eval.csv). The job is stopped with
SIGTERM once the evaluated regret at trial 100 falls below the lowest target (Thompson sampling's 2.78,
then 2.0 and 1.85 by default), or runs its --updates. Reported for each config, rank count and target:
the update, agent steps, training seconds (evaluation time left out) and wall seconds from launch at
the first evaluation below the target. The default configs are the earlier independent-bandit
settings (configs/bandit_independent_discounted.yaml: rewards, gamma 0.9, beta_e 0.05) and today's
default (configs/bandit_independent.yaml: the regret signal, gamma 0.9 -> 1), side by side. The first
evaluation below a target is a noisy criterion (one evaluation's standard error is about 0.1 at 1000
episodes and 0.05 at 4000): --eval-episodes sets it. A config may carry overrides after its
file, in one argument ("configs/bandit_independent.yaml train.rollout=twopass"). --quick: the smoke
config for a few updates, to check the plumbing, not the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import train_until, write_report  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The predecessors' pace as they report it (not measured here): 20k episodes in about 15 minutes on
# one thread, plateauing at 0.55-0.58 reward a trial, short of Thompson sampling.
PREDECESSOR = {"episodes": 20_000, "seconds": 15 * 60, "reached_target": False}


def label(config: str) -> str:
    """A config's file stem and its overrides: 'bandit_independent train.rollout=twopass'."""
    path, *overrides = config.split()
    return " ".join([Path(path).stem, *overrides])


def run_job(config: str, ranks: int, args, run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    path, *overrides = config.split()
    cmd += ["-m", "dist_vpg.train", "--config", path, *overrides]
    cmd += [
        f"train.updates={args.updates}",
        f"eval.every={args.eval_every}",
        f"eval.episodes={args.eval_episodes}",
        f"run_dir={run_dir}",
        "cpu.threads=1",
        "log.progress=lines",
        "log.tensorboard=false",
        f"checkpoint.every={args.updates}",
    ]
    rows, walls, err = train_until(cmd, run_dir, args.targets)
    if not rows:
        raise RuntimeError(f"the {ranks}-rank job of {config} wrote no evaluations: {err[-2000:]}")
    crossed = {t: next((r for r in rows if r["regret"] < t), None) for t in args.targets}
    return {"config": config, "ranks": ranks, "crossed": crossed, "walls": walls, "curve": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["configs/bandit_independent_discounted.yaml", "configs/bandit_independent.yaml"],
    )
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--updates", type=int, default=8000, help="the most updates a job may take")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-episodes", type=int, default=1000)
    parser.add_argument(
        "--targets", type=float, nargs="+", default=[2.78, 2.0, 1.85], help="regrets at trial 100 to beat"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.updates, args.eval_every, args.eval_episodes = ["configs/smoke.yaml"], 40, 20, 100
        args.targets = [12.0, 6.0]
    rows, table = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, config in enumerate(args.configs):
            for ranks in args.ranks:
                job = run_job(config, ranks, args, Path(tmp) / f"{i}-ranks{ranks}")
                last = job["curve"][-1]
                for target in args.targets:
                    c = job["crossed"][target]
                    row = {
                        "config": config,
                        "ranks": ranks,
                        "target": target,
                        "reached_target": c is not None,
                        "update": int(c["update"]) if c else None,
                        "agent_steps": int(c["agent_steps"]) if c else None,
                        "episodes": int(c["episodes_trained"]) if c else None,
                        "train_s": c["train_s"] if c else None,
                        "wall_s": job["walls"].get(target),
                        "regret": c["regret"] if c else last["regret"],
                        "regret_sem": c["regret_sem"] if c else last["regret_sem"],
                        "curve": job["curve"],
                    }
                    rows.append(row)
                    table.append(
                        [
                            label(config),
                            ranks,
                            target,
                            row["update"] or f"not within {int(last['update'])}",
                            f"{row['episodes']:,}" if c else "-",
                            f"{row['agent_steps']:,}" if c else "-",
                            f"{row['train_s']:.0f}" if c else "-",
                            f"{row['wall_s']:.0f}" if row["wall_s"] else "-",
                            f"{row['regret']:.2f} ± {row['regret_sem']:.2f}" + ("" if c else " (last)"),
                        ]
                    )
    p = PREDECESSOR
    table.append(
        [
            "predecessor (reported)",
            "-",
            2.78,
            "-",
            f"{p['episodes']:,}",
            "-",
            f"{p['seconds']}",
            "-",
            "plateau short",
        ]
    )
    note = (
        f"first evaluation ({args.eval_episodes} frozen-weight episodes, every {args.eval_every} updates) "
        f"with "
        f"regret below each target; train_s leaves evaluation out, wall_s counts from launch. "
        f"{max(args.ranks)} ranks on {os.cpu_count()} cores."
    )
    header = ["config", "ranks", "target", "update", "episodes", "agent steps", "train s", "wall s", "regret"]
    write_report("bench_learning", args, header, table, rows, note, args.out, plot=_plot)
    return 0


def _plot(rows, path: Path) -> None:
    with saved_figure(path, figsize=(6, 4)) as (_, ax):
        jobs = {(row["config"], row["ranks"]): row["curve"] for row in rows}
        for (config, ranks), curve in jobs.items():
            t = [r["train_s"] for r in curve]
            ax.plot(t, [r["regret"] for r in curve], marker=".", label=f"{label(config)}, {ranks} rank(s)")
        for target in sorted({row["target"] for row in rows}):
            ax.axhline(target, color="grey", ls="--", lw=0.8)
        ax.set(
            xlabel="training seconds", ylabel="evaluated regret at trial 100 (dashed: targets)", yscale="log"
        )
        ax.grid(alpha=0.3)
        ax.legend()


if __name__ == "__main__":
    sys.exit(main())
