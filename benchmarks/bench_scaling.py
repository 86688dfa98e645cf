"""End-to-end scaling of training from 1 rank up to the core count, on this machine.

    python benchmarks/bench_scaling.py [--ranks 1 2] [--updates 100] [--per-rank 64]
                                       [--global-batch 128] [--quick]

Each point is a real training job (dist_vpg.train.main on N spawned gloo ranks, default bandit task,
allreduce), one thread per rank, so that N ranks use N cores and 1 rank one core. Weak scaling keeps
the episodes per rank fixed (--per-rank), strong scaling the global batch (--global-batch). From each
job's median time per update phase (rollout, backward, sync wait, step, tracker) come: agent steps per
second over all ranks, efficiency = throughput(N) / (N x throughput(1)), and the share of the update
spent synchronizing. Jobs run with sync.measure_wait=true, which splits synchronizing into the wait
for the slowest rank (a timed barrier) and the collectives after it.

The `independent` rows run N separate 1-rank jobs at the same time, with no communication at all: the
machine's own ceiling for N busy cores. Weak scaling can do no better than that row, and the gap
between the two is what synchronization and imbalance cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Empty

import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import write_report  # noqa: E402
from dist_vpg import config, train  # noqa: E402
from dist_vpg.distributed import free_port, free_ports, set_rank_env  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

TRIALS = 100


def rank_main(rank: int, world_size: int, port: int, overrides: list[str], queue) -> None:
    set_rank_env(rank, world_size, port)
    summary = train.main(config.load(None, overrides))
    if rank == 0:
        queue.put(summary)


def run_job(
    world_size: int, batch: int, updates: int, extra: tuple[str, ...] = (), port: int | None = None
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"train.batch_episodes={batch}",
            f"train.updates={updates}",
            f"run_dir={tmp}/run",
            "log.tensorboard=false",
            "log.progress=lines",
            f"log.every={updates}",
            f"checkpoint.every={updates}",
            "sync.check_every=0",
            "eval.every=0",
            "cpu.threads=1",  # one thread per rank, whatever the number of ranks on the node
            "sync.measure_wait=true",  # the sync phase split into waiting for the slowest rank and the rest
            *extra,
        ]
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        port = port or free_port()
        procs = [
            ctx.Process(target=rank_main, args=(r, world_size, port, overrides, queue))
            for r in range(world_size)
        ]
        for p in procs:
            p.start()
        result = None
        while result is None:  # a rank that dies must end the benchmark, not hang it
            try:
                result = queue.get(timeout=1.0)
            except Empty:
                if all(not p.is_alive() for p in procs):
                    codes = [p.exitcode for p in procs]
                    raise RuntimeError(
                        f"a {world_size}-rank job ended without a summary (exit codes {codes})"
                    ) from None
        for p in procs:
            p.join()
    phases = result["phase_median_s"]  # medians over all updates: the warm-up barely moves them
    update_s = sum(phases.get(k, 0.0) for k in ("rollout", "backward", "sync_wait", "step", "tracker"))
    wait_s = phases.get("sync_wait", 0.0)
    return {
        "update_s": update_s,
        "sync_s": phases["sync"] + wait_s,  # the whole synchronization: waiting, then the collectives
        "wait_s": wait_s,
        "steps_per_s": batch * TRIALS / update_s,
    }


def run_independent(n: int, batch: int, updates: int, extra: tuple[str, ...] = ()) -> dict:
    """n 1-rank jobs at once, each on a core of its own; their throughputs summed."""
    ports = free_ports(n)  # chosen together: jobs started at once must not share a rendezvous port

    def job(i: int) -> dict:
        return run_job(1, batch, updates, (f"cpu.affinity=[{i}]", *extra), ports[i])

    with ThreadPoolExecutor(n) as pool:
        jobs = list(pool.map(job, range(n)))
    return {
        "update_s": max(j["update_s"] for j in jobs),
        "sync_s": 0.0,
        "wait_s": 0.0,
        "steps_per_s": sum(j["steps_per_s"] for j in jobs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cores = os.cpu_count() or 1
    parser.add_argument("--ranks", type=int, nargs="+", default=list(range(1, cores + 1)))
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--per-rank", type=int, default=64, help="episodes per rank (weak scaling)")
    parser.add_argument("--global-batch", type=int, default=128, help="episodes per update (strong scaling)")
    parser.add_argument(
        "--rollouts", nargs="+", default=["native", "twopass"], help="train.rollout modes, side by side"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 and 2 ranks, 15 updates, the first rollout mode only"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.quick:  # every kind of job once: the rollout modes differ by an override alone
        args.ranks, args.updates, args.rollouts = [1, 2], 15, args.rollouts[:1]
    plan = [("weak", n) for n in args.ranks] + [("strong", n) for n in args.ranks]
    plan += [("independent", n) for n in args.ranks if n > 1]
    plan = [(rollout, mode, n) for rollout in args.rollouts for mode, n in plan]
    rows, first = [], {}  # first: each (rollout, mode)'s throughput at its first rank count
    for rollout, mode, n in plan:
        extra = (f"train.rollout={rollout}",)
        if mode == "independent":  # n jobs of per_rank episodes, measured against weak scaling's first
            r, batch = run_independent(n, args.per_rank, args.updates, extra), args.per_rank * n
            base = first[rollout, "weak"]
        else:
            batch = args.per_rank * n if mode == "weak" else args.global_batch
            r = run_job(n, batch, args.updates, extra)
            base = first.setdefault((rollout, mode), r["steps_per_s"])
        rows.append(
            {
                "rollout": rollout,
                "mode": mode,
                "ranks": n,
                "oversubscribed": n > cores,
                "global_batch": batch,
                "steps_per_s": r["steps_per_s"],
                "efficiency": r["steps_per_s"] / (n * base),
                "update_ms": 1e3 * r["update_s"],
                "sync_ms": 1e3 * r["sync_s"],
                "wait_ms": 1e3 * r["wait_s"],
                "sync_share": r["sync_s"] / r["update_s"],
            }
        )
    header = (
        "rollout",
        "scaling",
        "ranks",
        "global batch",
        "steps/s",
        "efficiency",
        "update ms",
        "sync ms",
        "of which wait ms",
        "sync share",
    )
    table = [
        (
            r["rollout"],
            r["mode"],
            f"{r['ranks']}{'*' if r['oversubscribed'] else ''}",
            r["global_batch"],
            f"{r['steps_per_s']:,.0f}",
            f"{r['efficiency']:.0%}",
            f"{r['update_ms']:.1f}",
            f"{r['sync_ms']:.2f}",
            f"{r['wait_ms']:.2f}",
            f"{r['sync_share']:.1%}",
        )
        for r in rows
    ]
    note = (
        f"* more ranks than the {cores} cores: not a throughput figure"
        if any(r["oversubscribed"] for r in rows)
        else ""
    )
    write_report("bench_scaling", args, header, table, rows, note, args.out, plot=_plot)
    return 0


def _plot(rows, path: Path) -> None:
    with saved_figure(path, figsize=(6, 4)) as (_, ax):
        for rollout in dict.fromkeys(r["rollout"] for r in rows):
            for mode in ("weak", "strong"):
                pts = [
                    (r["ranks"], r["steps_per_s"])
                    for r in rows
                    if (r["mode"], r["rollout"]) == (mode, rollout)
                ]
                ax.plot(*zip(*pts), marker="o", label=f"{rollout}, {mode} scaling")
        one = rows[0]["steps_per_s"]  # the first rollout's weak scaling at its first rank count
        ranks = sorted({r["ranks"] for r in rows})
        ax.plot(
            ranks, [one * n / ranks[0] for n in ranks], linestyle=":", color="grey", label="linear (weak)"
        )
        ax.set(xlabel="ranks", ylabel="agent steps / s (all ranks)", xticks=ranks)
        ax.legend(fontsize=8)


if __name__ == "__main__":
    sys.exit(main())
