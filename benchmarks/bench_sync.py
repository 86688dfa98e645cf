"""Time per synchronization of every gradient-sync strategy, side by side in one job.

    python benchmarks/bench_sync.py [--world-sizes 2 4 8] [--hidden 48 192 768] [--iters 200] [--quick]

For each world size the ranks are spawned once (gloo on loopback, one thread each); for each agent
size every strategy synchronizes the same gradients `--iters` times, interleaved round by round so
that drift on a shared machine hits all strategies alike. Reported: median and interquartile range
per synchronization, and the latency of a 1-element all_reduce measured in the same job (the floor).
DDP reduces inside backward, so its figure is (forward+backward under DDP) - (forward+backward
without), both timed in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import percentiles, write_report  # noqa: E402
from dist_vpg import sync  # noqa: E402
from dist_vpg.agent import Agent  # noqa: E402
from dist_vpg.distributed import free_port  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

INPUT, ACTIONS, TRIALS, EPISODES = 5, 2, 5, 8  # the default bandit agent's input and output; DDP's
# reduction does not depend on the sequence, so a short one keeps its timing rounds quick


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _fill_grads(agent: Agent, value: float) -> None:
    for p in agent.parameters():
        p.grad = torch.full_like(p, value)


def _strategy_round(strategies, agent_grads, optimizer, results) -> None:
    for name, strat in strategies.items():
        if name == "ddp":
            continue
        agent_grads(strat.agent)
        dist.barrier()
        start = time.perf_counter()
        if name == "reduce_broadcast":
            strat.step(optimizer[name], max_norm=0.0)
        else:
            strat.reduce()
        results[name].append(time.perf_counter() - start)


def rank_main(rank: int, world_size: int, port: int, hiddens: list[int], iters: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    out = {}
    one = torch.ones(1)
    x = torch.rand(TRIALS, EPISODES, INPUT)
    for hidden in hiddens:
        torch.manual_seed(0)
        strategies = {
            name: sync.make_strategy(name, Agent(INPUT, ACTIONS, hidden)) for name in sync.STRATEGIES
        }
        optimizers = {name: torch.optim.SGD(s.agent.parameters(), lr=0.0) for name, s in strategies.items()}
        plain = Agent(INPUT, ACTIONS, hidden)
        ddp = strategies["ddp"].wrap()
        times = {name: [] for name in list(strategies) + ["floor_1_float", "ddp_backward", "plain_backward"]}
        for i in range(iters + 5):
            rnd = {name: [] for name in times}
            dist.barrier()
            rnd["floor_1_float"].append(_time(lambda: dist.all_reduce(one)))
            _strategy_round(strategies, lambda a: _fill_grads(a, 1.0 + rank), optimizers, rnd)
            for name, module in (("ddp_backward", ddp), ("plain_backward", plain)):
                module.zero_grad()
                dist.barrier()
                rnd[name].append(_time(lambda m=module: sum(t.sum() for t in m(x)).backward()))
            if i >= 5:  # warm-up rounds are dropped
                for name, v in rnd.items():
                    times[name] += v
        times["ddp"] = [d - p for d, p in zip(times.pop("ddp_backward"), times.pop("plain_backward"))]
        grad_floats = sum(p.numel() for p in plain.parameters())
        out[hidden] = {"grad_floats": grad_floats, "tensors": len(list(plain.parameters())), "seconds": times}
    if rank == 0:
        queue.put(out)
    dist.barrier()
    dist.destroy_process_group()


def run_world(world_size: int, hiddens: list[int], iters: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=rank_main, args=(r, world_size, port, hiddens, iters, queue))
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    result = queue.get(timeout=1800)
    for p in procs:
        p.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--hidden", type=int, nargs="+", default=[48, 192, 768])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="world size 2, default agent, 30 rounds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.world_sizes, args.hidden, args.iters = [2], [48], 30
    cores = os.cpu_count() or 1
    rows = []
    for world_size in args.world_sizes:
        print(f"world size {world_size} ...", flush=True)
        result = run_world(world_size, args.hidden, args.iters)
        for hidden, r in result.items():
            floor = statistics.median(r["seconds"]["floor_1_float"])
            flat = statistics.median(r["seconds"]["allreduce"])
            for name, secs in r["seconds"].items():
                p25, med, p75 = percentiles(secs)
                rows.append(
                    {
                        "world_size": world_size,
                        "oversubscribed": world_size > cores,
                        "hidden": hidden,
                        "grad_floats": r["grad_floats"],
                        "tensors": r["tensors"],
                        "strategy": name,
                        "median_ms": med * 1e3,
                        "p25_ms": p25 * 1e3,
                        "p75_ms": p75 * 1e3,
                        "x_floor": med / floor,
                        "x_allreduce": med / flat,
                        "samples": len(secs),
                    }
                )
    header = ("ranks", "hidden", "floats", "strategy", "median ms", "IQR ms", "x floor", "x allreduce")
    table = [
        (
            f"{r['world_size']}{'*' if r['oversubscribed'] else ''}",
            r["hidden"],
            r["grad_floats"],
            r["strategy"],
            f"{r['median_ms']:.3f}",
            f"{r['p25_ms']:.3f}-{r['p75_ms']:.3f}",
            f"{r['x_floor']:.1f}",
            f"{r['x_allreduce']:.2f}",
        )
        for r in rows
    ]
    note = (
        f"* more ranks than the {cores} cores: communication figures only, not throughput"
        if any(r["oversubscribed"] for r in rows)
        else ""
    )
    write_report("bench_sync", args, header, table, rows, note, args.out, plot=_plot)
    return 0


def _plot(rows, path: Path) -> None:
    hiddens = sorted({r["hidden"] for r in rows})
    with saved_figure(path, ncols=len(hiddens), figsize=(5 * len(hiddens), 4), squeeze=False) as (_, axes):
        for ax, hidden in zip(axes[0], hiddens):
            sub = [r for r in rows if r["hidden"] == hidden]
            for name in dict.fromkeys(r["strategy"] for r in sub):
                pts = sorted((r["world_size"], r["median_ms"]) for r in sub if r["strategy"] == name)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
            ax.set(
                title=f"hidden {hidden} ({sub[0]['grad_floats']:,} floats)",
                xlabel="ranks",
                ylabel="ms per synchronization",
                yscale="log",
            )
            ax.set_xticks(sorted({r["world_size"] for r in sub}))
        axes[0][0].legend(fontsize=8)


if __name__ == "__main__":
    sys.exit(main())
