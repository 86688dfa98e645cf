"""What N ranks buy, projected: the wall clock to a target regret for 1 to 256 ranks under weak
scaling (each rank keeps its share b of episodes, the global batch N b grows with the ranks), and
two measured points it is checked against.

    python benchmarks/bench_projection.py [--share 128] [--target 2.5] [--strategy allreduce]
                                          [--network "10 GbE"] [--latency-us 50] [--ranks-per-node 8]
                                          [--batch-results benchmarks/results/bench_batch.json]
                                          [--cost-results benchmarks/results/cost_model.json] [--quick]

The projection multiplies three measured pieces: the updates S(B) to the target at a global batch
B, from bench_batch's fit S = S_min (1 + B_crit / B) (its target and its settings: the default
config's schedules held at their start, no weight average); the time of one rank's update at its
share b, measured here by training the same job on one rank until the target; and the sync
strategy's time per update at N ranks, from cost_model's fit extrapolated to N ranks of
--ranks-per-node per node on --network with --latency-us a message.

    wall(N) = S(N b) x (update(b) + sync(N))

The measured points: the job to the target on 1 rank (global batch b) and on 2 ranks (2 b, a rank
per core; its sync is the job's own measured median, loopback being no cluster network), each
stopped at its first validation below the target. Their training seconds are set beside what the
model says for them. The criterion is noisy: the first of validations about every 25,600 training
episodes, each with a standard error of about 0.1, so a measured point may lie a validation
interval from the fit's S. --quick: the smoke config to a loose target, to check the plumbing, not
the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_batch import CONSTANT, fit_critical_batch  # noqa: E402
from benchmarks.common import train_until, write_report  # noqa: E402
from benchmarks.cost_model import NETWORKS, Point, agent_shapes, predict  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RANKS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def fitted_updates(path: Path, target: float) -> dict:
    """bench_batch's fit of S(B), from the jobs of its report that reached `target`."""
    report = json.loads(path.read_text())
    if report["config"]["target"] != target:
        raise SystemExit(f"{path} measured a target of {report['config']['target']}, not {target}")
    reached = [r for r in report["rows"] if r["reached"]]
    if len(reached) < 2:
        raise SystemExit(f"{path} has {len(reached)} batches that reached the target: the fit needs two")
    fit = fit_critical_batch([r["batch"] for r in reached], [r["updates"] for r in reached])
    return fit | {"lr": report["config"]["lr"], "eval_apart": report["config"]["eval_apart"]}


def sync_seconds(
    path: Path, strategy: str, ranks: int, per_node: int, bits: float, latency_s: float
) -> float:
    """cost_model's fitted time of one synchronization of the default agent's gradient."""
    (row,) = [
        r for r in json.loads(path.read_text())["rows"] if r["kind"] == "fit" and r["strategy"] == strategy
    ]
    coef = np.array([row["call_us"] * 1e-6, row["beta"], row["gamma_ns_per_float"] * 1e-9])
    floats = sum(int(np.prod(s)) for s in agent_shapes(48))
    point = Point(max(1, ranks // per_node), min(ranks, per_node), floats, 48)
    return predict(strategy, coef, point, bits, latency_s) if ranks > 1 else 0.0


def measure(ranks: int, args, fit: dict, run_dir: Path) -> dict:
    """The job on `ranks` ranks of `share` episodes each, trained until a validation falls below the
    target: its updates and training seconds there, its seconds per update and its median sync."""
    batch = ranks * args.share
    updates = max(1, int(args.max_episodes // batch))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    cmd += ["-m", "dist_vpg.train", "--config", args.config, *CONSTANT]
    cmd += [
        f"train.batch_episodes={batch}", f"train.lr={fit['lr']!r}", f"train.updates={updates}",
        f"eval.every={max(2, fit['eval_apart'] // batch)}", "eval.episodes=1000",
        f"checkpoint.every={updates}",
        f"seed={args.seed}", "log.every=10", "log.tensorboard=false", "log.progress=lines", "cpu.threads=1",
        f"run_dir={run_dir}",
    ]  # fmt: skip
    rows, _, err = train_until(cmd, run_dir, [args.target])
    crossed = next((r for r in rows if r["regret"] < args.target), None)
    if crossed is None:
        raise SystemExit(f"the {ranks}-rank job did not reach {args.target}: {err[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "ranks": ranks,
        "global_batch": batch,
        "updates": int(crossed["update"]),
        "train_s": crossed["train_s"],
        "update_s": crossed["train_s"] / crossed["update"],
        "sync_s": summary["phase_median_s"].get("sync", 0.0),
    }


def projected(ranks: int, fit: dict, share: int, compute_s: float, sync_s: float) -> dict:
    batch = ranks * share
    updates = fit["s_min"] * (1 + fit["b_crit"] / batch)
    update_s = compute_s + sync_s
    return {
        "ranks": ranks,
        "global_batch": batch,
        "updates": updates,
        "update_s": update_s,
        "wall_s": updates * update_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/bandit_independent.yaml")
    parser.add_argument("--share", type=int, default=128, help="episodes per rank and update")
    parser.add_argument("--target", type=float, default=2.5)
    parser.add_argument("--max-episodes", type=float, default=4e6)
    parser.add_argument("--strategy", default="allreduce")
    parser.add_argument("--network", choices=sorted(NETWORKS), default="10 GbE")
    parser.add_argument("--latency-us", type=float, default=50.0)
    parser.add_argument("--ranks-per-node", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-results", type=Path, default=ROOT / "benchmarks/results/bench_batch.json")
    parser.add_argument("--cost-results", type=Path, default=ROOT / "benchmarks/results/cost_model.json")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    fit = fitted_updates(args.batch_results, args.target)
    if args.quick:  # the plumbing: the smoke config's small jobs to a loose target
        args.config, args.share, args.max_episodes = "configs/smoke.yaml", 16, 4000
        args.target, fit = 40.0, fit | {"eval_apart": 64}
    with tempfile.TemporaryDirectory() as scratch:
        measured = [measure(n, args, fit, Path(scratch) / f"ranks{n}") for n in (1, 2)]
    compute_s = measured[0]["update_s"]  # one rank's update at its share, sync-free
    bits, latency = NETWORKS[args.network], args.latency_us * 1e-6
    rows = []
    for n in RANKS:
        sync = sync_seconds(args.cost_results, args.strategy, n, args.ranks_per_node, bits, latency)
        rows.append({"kind": "projected"} | projected(n, fit, args.share, compute_s, sync))
    for m in measured:  # the model at the measured points: this machine's sync, not the cluster's
        model = projected(m["ranks"], fit, args.share, compute_s, m["sync_s"])
        rows.append(
            {"kind": "measured"} | m | {"model_wall_s": model["wall_s"], "model_updates": model["updates"]}
        )
    two = next(r for r in rows if r["kind"] == "projected" and r["ranks"] == 2)["wall_s"]
    table = []
    for r in rows:
        wall = r["wall_s"] if r["kind"] == "projected" else r["train_s"]
        model = (
            f"{r['model_wall_s']:.1f} s ({wall / r['model_wall_s'] - 1:+.0%})"
            if r["kind"] == "measured"
            else ""
        )
        table.append(
            [r["kind"], r["ranks"], r["global_batch"], f"{r['updates']:.0f}", f"{1e3 * r['update_s']:.1f}",
             f"{wall:.1f}", f"{two / wall:.2f}" if r["kind"] == "projected" else "", model]
        )  # fmt: skip
    note = (
        f"S(B) = {fit['s_min']:.0f} (1 + {fit['b_crit']:.0f} / B) updates to {args.target} (bench_batch's "
        f"fit); one rank's update at {args.share} episodes {1e3 * compute_s:.1f} ms (measured); sync: "
        f"{args.strategy} on {args.network}, {args.latency_us:g} us a message, {args.ranks_per_node} ranks "
        "a node (cost_model's fit). x 2 ranks: the 2-rank projection's wall clock over this row's."
    )
    header = [
        "",
        "ranks",
        "global batch",
        "updates",
        "update ms",
        "wall s",
        "x 2 ranks",
        "model (measured / model - 1)",
    ]
    write_report("bench_projection", args, header, table, rows, note, args.out, plot)
    return 0


def plot(rows: list[dict], path: Path) -> None:
    projected_rows = [r for r in rows if r["kind"] == "projected"]
    measured_rows = [r for r in rows if r["kind"] == "measured"]
    with saved_figure(path, figsize=(6.5, 4)) as (_, ax):
        ranks = [r["ranks"] for r in projected_rows]
        ax.plot(
            ranks,
            [r["wall_s"] for r in projected_rows],
            "o-",
            label="projected (fit x measured update + sync model)",
        )
        ax.plot(
            [r["ranks"] for r in measured_rows], [r["train_s"] for r in measured_rows], "s", label="measured"
        )
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(n) for n in ranks])
        ax.set(
            xlabel="ranks (weak scaling: a fixed share of episodes each)",
            ylabel="training seconds to the target",
        )
        ax.set_ylim(bottom=0)
        ax.legend()


if __name__ == "__main__":
    sys.exit(main())
