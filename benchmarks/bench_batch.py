"""Updates and episodes to a target regret against the global batch, and the critical batch fitted to
them beside the online gradient noise scale.

    python benchmarks/bench_batch.py [--config configs/bandit_independent.yaml] [--batches 128 512 2048 8192]
                                     [--target 2.5] [--max-episodes 4000000] [--lr-rule none] [--jobs 2]
                                     [--seed 0] [--quick]

Each batch B is one real training job (one rank, one thread, --jobs at a time) of the config with
its schedules held at their starting values (lr, gamma and the entropy bonus constant, so that the
run's length changes nothing but when it stops) and no weight average (the periodic validation
scores the weights themselves), evaluated with frozen weights on 1000 validation episodes about
every 25,600 training episodes (--eval-apart), and stopped once one evaluation's regret falls below
--target. B is played as two or more accumulation rounds, so that every job measures the gradient
noise scale (one rollout round of at most 1024 episodes). --lr-rule scales the lr with B / 256
(none, sqrt, linear).

Reported per B: updates S and episodes E at the first evaluation below the target, the training
seconds, and the online noise scale at that point. Fitted (McCandlish et al. 2018, "An Empirical Model
of Large-Batch Training", eq. 2.11, (S / S_min - 1)(E / E_min - 1) = 1, equivalently
S = S_min (1 + B_crit / B)): S_min, E_min and B_crit = E_min / S_min, by least squares on log S.
The first evaluation below a target is a noisy criterion (an evaluation's standard error is about 0.1
here); the fit inherits that noise. --quick: the smoke config, two small batches, to check the
plumbing, not the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import train_until, write_report  # noqa: E402
from dist_vpg.batching import LR_POWERS  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ROUND_MAX = 1024  # episodes of one rollout round: bigger batches take more rounds
# every schedule constant, the batch included: each job is one batch size throughout
CONSTANT = [
    "train.lr_final=-1",
    "train.gamma_final=-1",
    "train.beta_e_final=-1",
    "train.average=0",
    "sync.accumulate_final=0",
]


def job_overrides(batch: int, args) -> list[str]:
    share = min(batch // 2, ROUND_MAX)
    rounds = batch // share
    lr = args.lr * (batch / 256) ** LR_POWERS[args.lr_rule]
    updates = max(1, int(args.max_episodes // batch))
    return CONSTANT + [
        f"train.batch_episodes={share}",
        f"sync.accumulate={rounds}",
        f"train.lr={lr!r}",
        f"train.updates={updates}",
        f"eval.every={max(2, args.eval_apart // batch)}",
        f"eval.episodes={args.eval_episodes}",
        f"checkpoint.every={updates}",
        f"seed={args.seed}",
        "log.every=10",
        "log.tensorboard=false",
        "log.progress=lines",
        "cpu.threads=1",
    ]


def run_job(batch: int, args, run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    cmd += ["-m", "dist_vpg.train", *(["--config", args.config] if args.config else [])]
    cmd += [*args.overrides, *job_overrides(batch, args), f"run_dir={run_dir}"]
    rows, _, err = train_until(cmd, run_dir, [args.target])
    if not rows:
        raise RuntimeError(f"the job of batch {batch} wrote no evaluations: {err[-2000:]}")
    crossed = next((r for r in rows if r["regret"] < args.target), None)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "batch": batch,
        "reached": crossed is not None,
        "updates": int(crossed["update"]) if crossed else None,
        "episodes": int(crossed["episodes_trained"]) if crossed else None,
        "train_s": crossed["train_s"] if crossed else None,
        "regret": (crossed or rows[-1])["regret"],
        "noise_scale": summary["noise_scale"],
        "curve": rows,
    }


def fit_critical_batch(batches: list[float], updates: list[float]) -> dict:
    """S = S_min (1 + B_crit / B), least squares on log S over a log-spaced grid of B_crit (S_min in
    closed form for each); E_min = S_min B_crit."""
    b, log_s = np.asarray(batches, float), np.log(np.asarray(updates, float))
    best = None
    for b_crit in np.geomspace(1, 1e7, 4001):
        shape = np.log1p(b_crit / b)
        log_s_min = float(np.mean(log_s - shape))
        error = float(np.sum((log_s - log_s_min - shape) ** 2))
        if best is None or error < best[0]:
            best = (error, float(b_crit), math.exp(log_s_min))
    error, b_crit, s_min = best
    return {
        "s_min": s_min,
        "e_min": s_min * b_crit,
        "b_crit": b_crit,
        "rms_log_error": math.sqrt(error / len(b)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/bandit_independent.yaml")
    parser.add_argument("--overrides", nargs="*", default=[], help="key=value for every job")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512, 2048, 8192])
    parser.add_argument("--target", type=float, default=2.5, help="validation regret to fall below")
    parser.add_argument("--max-episodes", type=float, default=4e6, help="a job's most training episodes")
    parser.add_argument("--lr", type=float, default=1e-3, help="the lr at a batch of 256")
    parser.add_argument("--lr-rule", choices=sorted(LR_POWERS), default="none")
    parser.add_argument("--eval-episodes", type=int, default=1000)
    parser.add_argument(
        "--eval-apart", type=int, default=25_600, help="training episodes between evaluations"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.config, args.batches, args.max_episodes, args.target = "configs/smoke.yaml", [16, 32], 4000, 20.0
        args.eval_episodes, args.eval_apart, args.lr = 100, 320, 0.007
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(run_job, b, args, Path(tmp) / f"batch{b}") for b in args.batches]
        rows = [job.result() for job in jobs]
    reached = [r for r in rows if r["reached"]]
    fit = (
        fit_critical_batch([r["batch"] for r in reached], [r["updates"] for r in reached])
        if len(reached) > 1
        else {}
    )
    table = []
    for r in rows:
        scale = r["noise_scale"].get("episodes")
        table.append(
            [
                r["batch"],
                r["updates"] if r["reached"] else f"not within {int(r['curve'][-1]['update'])}",
                f"{r['episodes']:,}" if r["reached"] else "-",
                f"{r['train_s']:.0f}" if r["reached"] else "-",
                f"{r['regret']:.2f}",
                f"{scale:,.0f}" if scale else "-",
            ]
        )
    note = f"target {args.target} on {args.eval_episodes} validation episodes; lr rule {args.lr_rule}"
    if fit:
        note += (
            f"; fitted S_min {fit['s_min']:,.0f} updates, E_min {fit['e_min']:,.0f} episodes, "
            f"B_crit {fit['b_crit']:,.0f} episodes (rms log error {fit['rms_log_error']:.2f})"
        )
    header = ["batch", "updates to target", "episodes", "train s", "regret", "online noise scale"]
    for r in rows:
        r["fit"] = fit
    write_report("bench_batch", args, header, table, rows, note, args.out, plot=_plot)
    return 0


def _plot(rows, path: Path) -> None:
    reached = [r for r in rows if r["reached"]]
    with saved_figure(path, figsize=(6, 4)) as (_, ax):
        if not reached:
            ax.text(0.5, 0.5, "no batch reached the target", ha="center", transform=ax.transAxes)
            return
        ax.plot([r["episodes"] for r in reached], [r["updates"] for r in reached], "o", label="measured")
        fit = rows[0].get("fit") if rows else None
        if fit:
            b = np.geomspace(min(r["batch"] for r in rows) / 2, max(r["batch"] for r in rows) * 2, 100)
            s = fit["s_min"] * (1 + fit["b_crit"] / b)
            ax.plot(s * b, s, "-", label=f"fit: B_crit {fit['b_crit']:,.0f}")
        for r in reached:
            ax.annotate(f"B={r['batch']}", (r["episodes"], r["updates"]), fontsize=8)
        ax.set(xscale="log", yscale="log", xlabel="episodes to target (E)", ylabel="updates to target (S)")
        ax.grid(alpha=0.3)
        ax.legend()


if __name__ == "__main__":
    sys.exit(main())
