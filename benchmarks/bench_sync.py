"""Time per synchronization of every gradient-sync strategy, side by side in one job, and the error
each one leaves in the reduced gradient.

    python benchmarks/bench_sync.py [--world-sizes 2 4 8] [--hidden 48 96 192] [--iters 200] [--quick]

For each world size the ranks are spawned once (gloo on loopback, one thread each); for each agent
size every strategy synchronizes the same gradients (each rank's from a real backward on its own
inputs) `--iters` times, interleaved round by round so that drift on a shared machine hits all
strategies alike. Reported: median and interquartile range per synchronization, the latency of a
1-element all_reduce measured in the same job (the floor), and the median relative error of the
reduced gradient against the exact mean (float64). The DDP family reduces inside backward, so its
figure is (forward+backward under DDP) - (forward+backward without), both timed in the same rounds.
local_sgd's figure is one weight average, which it pays once per `sync.period` updates.

`--worker` measures in an already-initialized job instead (torchrun's environment; rank 0 writes the
results as JSON to --worker-out): benchmarks/bench_cluster.py runs it on emulated nodes.
"""

from __future__ import annotations

import argparse
import json
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
from dist_vpg.config import SyncConfig  # noqa: E402
from dist_vpg.distributed import free_port  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

INPUT, ACTIONS, TRIALS, EPISODES = 5, 2, 5, 8  # the default bandit agent's input and output; DDP's
# reduction does not depend on the sequence, so a short one keeps its timing rounds quick
WARMUP = 5  # rounds dropped: first calls, and ddp_powersgd's plain all_reduce updates
DDP_FAMILY = ("ddp", "ddp_fp16", "ddp_bf16", "ddp_powersgd")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _flat(agent: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in agent.parameters()])


def _loss(module, x, w) -> torch.Tensor:
    logits, values = module(x)
    return (logits * w).sum() + values.sum()


def _time_one(name: str, strat, plain: Agent, x, w, mine: torch.Tensor, sgd) -> float:
    """Seconds of one reduce by strategy `name` of this rank's gradient `mine`."""
    agent = strat.agent
    if name in DDP_FAMILY:  # reduced in backward: minus the same backward without DDP
        plain.zero_grad()
        dist.barrier()
        bare = _time(lambda: _loss(plain, x, w).backward())
        agent.zero_grad()
        model = strat.wrap()
        dist.barrier()
        return _time(lambda: _loss(model, x, w).backward()) - bare
    if name == "local_sgd":
        dist.barrier()
        return _time(lambda: strat.average(0))
    for p, g in zip(agent.parameters(), torch.split(mine, [p.numel() for p in agent.parameters()])):
        p.grad = g.view_as(p).clone()
    dist.barrier()
    if name == "reduce_broadcast":  # reduces, steps on rank 0 (lr 0), broadcasts weights
        return _time(lambda: strat.step(sgd, max_norm=0.0))
    return _time(strat.reduce)


def _measure_size(hidden: int, iters: int, settings: SyncConfig) -> dict:
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    plain = Agent(INPUT, ACTIONS, hidden)

    def copy() -> Agent:  # the same weights: the DDP family's gradients are the plain agent's
        agent = Agent(INPUT, ACTIONS, hidden)
        agent.load_state_dict(plain.state_dict())
        return agent

    strategies = {name: sync.make_strategy(name, copy(), settings) for name in sync.STRATEGIES}
    x = torch.rand(TRIALS, EPISODES, INPUT, generator=torch.Generator().manual_seed(rank))
    w = torch.rand(TRIALS, EPISODES, ACTIONS, generator=torch.Generator().manual_seed(99))
    _loss(plain, x, w).backward()
    mine = _flat(plain)  # this rank's gradient; the exact mean of all ranks' in float64:
    gathered = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    exact = torch.stack(gathered).double().mean(0)
    sgd = {name: torch.optim.SGD(s.agent.parameters(), lr=0.0) for name, s in strategies.items()}
    names = list(strategies) + ["floor_1_float"]
    times: dict[str, list[float]] = {name: [] for name in names}
    errors: dict[str, list[float]] = {name: [] for name in strategies if name != "local_sgd"}
    one = torch.ones(1)

    def error(agent) -> float:  # what rank 0 holds (reduce_broadcast reduces onto rank 0 alone)
        return float((_flat(agent).double() - exact).norm() / exact.norm())

    for i in range(iters + WARMUP):
        rnd: dict[str, float] = {}
        dist.barrier()
        rnd["floor_1_float"] = _time(lambda: dist.all_reduce(one))
        for name, strat in strategies.items():
            rnd[name] = _time_one(name, strat, plain, x, w, mine, sgd[name])
            if i >= WARMUP and name != "local_sgd":  # local SGD averages weights, not gradients
                errors[name].append(error(strat.agent))
        if i >= WARMUP:
            for name, v in rnd.items():
                times[name].append(v)
    return {
        "grad_floats": mine.numel(),
        "tensors": len(list(plain.parameters())),
        "seconds": times,
        "rel_error": {name: statistics.median(v) for name, v in errors.items()},
    }


def measure(hiddens: list[int], iters: int, settings: SyncConfig) -> dict:
    """Every agent size, on this job's ranks (a collective: every rank calls it)."""
    return {hidden: _measure_size(hidden, iters, settings) for hidden in hiddens}


def rank_main(rank: int, world_size: int, port: int, hiddens: list[int], iters: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    out = measure(hiddens, iters, SyncConfig())
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


def worker(hiddens: list[int], iters: int, out: Path, probe_bytes: int) -> None:
    """Under torchrun: measure, probe the link between the first two nodes, rank 0 writes JSON."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        nodes = sync.node_layout(0)
        result = {
            "nodes": nodes,
            "link_mbit_s": link_probe(nodes, probe_bytes),
            "sizes": measure(hiddens, iters, SyncConfig()),
        }
        if dist.get_rank() == 0:
            out.write_text(json.dumps(result))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def link_probe(nodes: list[list[int]], size: int, repeats: int = 5) -> float | None:
    """Megabits per second from the first node's leader to the second's (send, then a 1-float
    acknowledgement; median of `repeats`). None on one node."""
    if len(nodes) < 2:
        return None
    src, dst, rank = nodes[0][0], nodes[1][0], dist.get_rank()
    buf, ack, seconds = torch.zeros(size // 4), torch.zeros(1), []
    for _ in range(repeats + 1):
        dist.barrier()
        start = time.perf_counter()
        if rank == src:
            dist.send(buf, dst)
            dist.recv(ack, dst)
        elif rank == dst:
            dist.recv(buf, src)
            dist.send(ack, src)
        seconds.append(time.perf_counter() - start)
    box = [statistics.median(seconds[1:])]
    dist.broadcast_object_list(box, src=src)
    return size * 8 / box[0] / 1e6


def rows_of(world_size: int, result: dict, cores: int, extra: dict | None = None) -> list[dict]:
    rows = []
    for hidden, r in result.items():
        floor = statistics.median(r["seconds"]["floor_1_float"])
        flat = statistics.median(r["seconds"]["allreduce"])
        for name, secs in r["seconds"].items():
            p25, med, p75 = percentiles(secs)
            rows.append(
                (extra or {})
                | {
                    "world_size": world_size,
                    "oversubscribed": world_size > cores,
                    "hidden": int(hidden),
                    "grad_floats": r["grad_floats"],
                    "tensors": r["tensors"],
                    "strategy": name,
                    "median_ms": med * 1e3,
                    "p25_ms": p25 * 1e3,
                    "p75_ms": p75 * 1e3,
                    "x_floor": med / floor,
                    "x_allreduce": med / flat,
                    "rel_error": r["rel_error"].get(name),
                    "samples": len(secs),
                }
            )
    return rows


def error_text(e: float | None) -> str:
    return "-" if e is None else "0" if e == 0 else f"{e:.1e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--hidden", type=int, nargs="+", default=[48, 96, 192])
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="world size 2, default agent, 30 rounds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--worker", action="store_true", help="measure in this torchrun job (bench_cluster)")
    parser.add_argument("--worker-out", type=Path, help="with --worker: where rank 0 writes the JSON")
    parser.add_argument("--probe-bytes", type=int, default=4 << 20, help="with --worker: link probe size")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.hidden, args.iters, args.worker_out, args.probe_bytes)
        return 0
    if args.quick:
        args.world_sizes, args.hidden, args.iters = [2], [48], 30
    cores = os.cpu_count() or 1
    rows = []
    for world_size in args.world_sizes:
        print(f"world size {world_size} ...", flush=True)
        rows += rows_of(world_size, run_world(world_size, args.hidden, args.iters), cores)
    header = (
        "ranks",
        "hidden",
        "floats",
        "strategy",
        "median ms",
        "IQR ms",
        "x floor",
        "x allreduce",
        "rel. error",
    )
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
            error_text(r["rel_error"]),
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
        axes[0][0].legend(fontsize=7)


if __name__ == "__main__":
    sys.exit(main())
