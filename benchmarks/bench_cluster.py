"""Which gradient-sync strategy on my cluster? Every strategy timed on emulated nodes whose links are
shaped to a bandwidth.

    sudo .venv/bin/python benchmarks/bench_cluster.py [--nodes 2 4] [--ranks-per-node 1 2]
        [--bandwidths 100mbit 1gbit 3gbit unshaped] [--hidden 48 96 192] [--iters 30] [--quick]

For each layout (nodes x ranks per node) it builds the nodes (benchmarks/emulated.py: network
namespaces on a bridge), and for each bandwidth shapes every node's link both ways and starts one
torchrun per node through launch.sh (NNODES, NODE_RANK, MASTER_ADDR, GLOO_SOCKET_IFNAME: the real
multi-node launch path) running bench_sync's measurement: every strategy interleaved round by round
on the default agent's gradient and on agents with about 4x and 16x as many parameters (hidden 96,
192). Each job also probes its link (rank 0 of node 0 sends 4 MB to node 1's first rank): the
bandwidth the table reports beside the shaped one. Rows with more ranks than cores are marked:
communication figures only. Needs root and iproute2; otherwise it says why and writes no rows.
benchmarks/cost_model.py fits and extrapolates these points.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.bench_sync import error_text, rows_of  # noqa: E402
from benchmarks.common import write_report  # noqa: E402
from benchmarks.emulated import EmulatedCluster, Unavailable  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

JOB_TIMEOUT_S = 1800
UNSHAPED = "unshaped"


def run_job(cluster: EmulatedCluster, ranks_per_node: int, hiddens: list[int], iters: int, port: int) -> dict:
    """One torchrun per node through launch.sh; returns rank 0's measurements."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        procs = []
        for i, node in enumerate(cluster.nodes):
            env = dict(
                os.environ,
                NNODES=str(len(cluster.nodes)),
                NODE_RANK=str(i),
                MASTER_ADDR=cluster.nodes[0].address,
                MASTER_PORT=str(port),
                NPROC=str(ranks_per_node),
                GLOO_SOCKET_IFNAME=node.device,
                DIST_VPG_MODULE="benchmarks.bench_sync",
            )
            worker = [
                "--worker",
                "--worker-out",
                str(out),
                "--iters",
                str(iters),
                "--hidden",
                *map(str, hiddens),
            ]
            procs.append(
                subprocess.Popen(
                    cluster.command(i, [str(ROOT / "launch.sh"), *worker]),
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        logs = []
        try:
            logs = [p.communicate(timeout=JOB_TIMEOUT_S)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        failed = [(i, log) for i, (p, log) in enumerate(zip(procs, logs)) if p.returncode != 0]
        if failed:
            i, log = failed[0]
            raise RuntimeError(f"node {i}'s job failed (exit {procs[i].returncode}):\n{log[-3000:]}")
        return json.loads(out.read_text())


def layouts(nodes: list[int], per_node: list[int], max_ranks: int) -> list[tuple[int, int]]:
    return [(n, r) for n in nodes for r in per_node if n * r <= max_ranks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--ranks-per-node", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-ranks", type=int, default=4, help="layouts with more ranks are left out")
    parser.add_argument("--bandwidths", nargs="+", default=["100mbit", "1gbit", "3gbit", UNSHAPED])
    parser.add_argument("--hidden", type=int, nargs="+", default=[48, 96, 192])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument(
        "--quick", action="store_true", help="2 nodes of 1 rank, 100mbit and unshaped, default agent"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.ranks_per_node, args.bandwidths, args.hidden, args.iters = (
            [2],
            [1],
            ["100mbit", UNSHAPED],
            [48],
            8,
        )
    cores = os.cpu_count() or 1
    rows, skipped, port = [], "", 29611
    try:
        for n_nodes, per_node in layouts(args.nodes, args.ranks_per_node, args.max_ranks):
            with EmulatedCluster(n_nodes) as cluster:
                for bandwidth in args.bandwidths:
                    print(f"{n_nodes} nodes x {per_node} ranks, {bandwidth} ...", flush=True)
                    cluster.shape(None if bandwidth == UNSHAPED else bandwidth)
                    result = run_job(cluster, per_node, args.hidden, args.iters, port)
                    port += 1
                    extra = {
                        "nodes": n_nodes,
                        "ranks_per_node": per_node,
                        "bandwidth": bandwidth,
                        "link_mbit_s": result["link_mbit_s"],
                    }
                    rows += rows_of(n_nodes * per_node, result["sizes"], cores, extra)
    except Unavailable as e:
        skipped = f"skipped: {e}"
        print(f"bench_cluster: {skipped}", file=sys.stderr)
    strategies = list(dict.fromkeys(r["strategy"] for r in rows if r["strategy"] != "floor_1_float"))
    header = ("nodes x ranks", "link", "Mbit/s", "hidden", "floats", *strategies, "fastest")
    table = []
    for key in dict.fromkeys((r["nodes"], r["ranks_per_node"], r["bandwidth"], r["hidden"]) for r in rows):
        sub = {
            r["strategy"]: r
            for r in rows
            if (r["nodes"], r["ranks_per_node"], r["bandwidth"], r["hidden"]) == key
        }
        first = next(iter(sub.values()))
        fastest = min(strategies, key=lambda s: sub[s]["median_ms"])
        table.append(
            (
                f"{key[0]} x {key[1]}{'*' if first['oversubscribed'] else ''}",
                key[2],
                f"{first['link_mbit_s']:.0f}",
                key[3],
                first["grad_floats"],
                *(f"{sub[s]['median_ms']:.2f}" for s in strategies),
                fastest,
            )
        )
    notes = [skipped] if skipped else []
    notes.append("ms per synchronization (local_sgd: per weight average, paid once per sync.period updates)")
    if any(r["oversubscribed"] for r in rows):
        notes.append(f"* more ranks than the {cores} cores: communication figures only, not throughput")
    errors = {r["strategy"]: r["rel_error"] for r in rows if r["hidden"] == min(args.hidden)}
    notes.append(
        "relative error of the reduced gradient: "
        + ", ".join(f"{s} {error_text(e)}" for s, e in errors.items())
    )
    write_report(
        "bench_cluster", args, header, table, rows, "\n".join(notes), args.out, plot=_plot if rows else None
    )
    return 0


def _plot(rows, path: Path) -> None:
    hiddens = sorted({r["hidden"] for r in rows})
    layouts_seen = list(dict.fromkeys((r["nodes"], r["ranks_per_node"]) for r in rows))
    shape = dict(nrows=len(layouts_seen), ncols=len(hiddens), squeeze=False)
    with saved_figure(path, figsize=(4.5 * len(hiddens), 3.5 * len(layouts_seen)), **shape) as (_, axes):
        for row_axes, (n, per) in zip(axes, layouts_seen):
            for ax, hidden in zip(row_axes, hiddens):
                sub = [r for r in rows if (r["nodes"], r["ranks_per_node"], r["hidden"]) == (n, per, hidden)]
                for name in dict.fromkeys(r["strategy"] for r in sub):
                    if name == "floor_1_float":
                        continue
                    pts = sorted((r["link_mbit_s"], r["median_ms"]) for r in sub if r["strategy"] == name)
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
                ax.set(
                    title=f"{n} nodes x {per} ranks, {sub[0]['grad_floats']:,} floats",
                    xlabel="measured link Mbit/s",
                    ylabel="ms per synchronization",
                    xscale="log",
                    yscale="log",
                )
        axes[0][0].legend(fontsize=6)


if __name__ == "__main__":
    sys.exit(main())
