"""An alpha-beta cost model of every sync strategy, fitted to bench_cluster's measurements, checked
on points it was not fitted on, and extrapolated to clusters this machine cannot emulate.

    python benchmarks/cost_model.py [--measured benchmarks/results/bench_cluster.json]
        [--ranks 16 64 256 1024] [--ranks-per-node 8] [--latency-us 50] [--period 8]

Each strategy's time per synchronization is modelled as

    T = c + alpha * steps + beta * max(0, bytes - burst) / bandwidth + gamma * floats

`steps` is the number of sequential messages of the strategy's algorithm (ring all_reduce: 2(p-1)),
`bytes` what crosses the busiest node link (ring all_reduce: 2(p-1)/p of the gradient), `floats` the
gradient's size (copies, casts, compression on the CPU): three counts from the textbook form of each
algorithm (`shape` below; gloo's all_reduce and reduce are rings, its broadcast a binomial tree).
alpha, the latency of one message, is not fitted: in the measurements it is the 1-float all_reduce
measured in the same job divided by its 2(p-1) messages; when extrapolating it is --latency-us, a
real network's, which this kernel cannot emulate (no netem). `burst` is the emulator's token bucket,
which lets the start of a message through at once; a real link has none. c (a fixed cost per call),
beta and gamma are fitted per strategy, by least squares on relative error, from the points measured
with one rank per core at some bandwidths and agent sizes, and judged on the others (--held-out-*).
Measured: 2 and 4 nodes, 1 and 2 ranks per node, links shaped by tbf, on one machine. Extrapolated:
everything beyond, to the bandwidths of common cluster networks. The extrapolation is a model, not a
measurement; it says which strategy should win where, to be checked on the cluster itself.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import write_report  # noqa: E402
from benchmarks.emulated import bucket_bytes  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

NETWORKS = {"1 GbE": 0.94e9, "10 GbE": 9.4e9, "25 GbE": 23.5e9, "100 Gb/s": 94e9}  # achievable bits/s
ACTIONS, INPUT = 2, 5


def agent_shapes(hidden: int) -> list[tuple[int, ...]]:
    """The default agent's parameter shapes (LSTM, policy and value heads)."""
    h4 = 4 * hidden
    return [(h4, INPUT), (h4, hidden), (h4,), (h4,), (ACTIONS, hidden), (ACTIONS,), (1, hidden), (1,)]


def powersgd_floats(hidden: int, rank: int = 2, min_rate: float = 2.0) -> int:
    """Floats ddp_powersgd all-reduces per update: P and Q for each matrix worth compressing
    (torch's rule), the rest whole."""
    total = 0
    for shape in agent_shapes(hidden):
        n = shape[0]
        m = math.prod(shape[1:]) if len(shape) > 1 else 1
        k = min(n, m, rank)
        total += (n + m) * k if (n + m) * k * min_rate < n * m else n * m
    return total


@dataclass(frozen=True)
class Point:
    nodes: int
    per_node: int
    floats: int  # the gradient
    hidden: int

    @property
    def ranks(self) -> int:
        return self.nodes * self.per_node


def shape(strategy: str, g: Point) -> tuple[float, float, float]:
    """(sequential messages, bytes over the busiest node link, floats handled on the CPU)."""
    p, n, N, r = g.ranks, g.floats, g.nodes, g.per_node
    ring = 2 * (p - 1)  # reduce-scatter then all-gather, p-1 steps each
    ring_bytes = 2 * (p - 1) / p * 4 * n
    lg = math.ceil(math.log2(p))
    if strategy in ("allreduce", "ddp", "local_sgd"):
        return ring, ring_bytes, n
    if strategy == "allreduce_per_param":
        return ring * len(agent_shapes(g.hidden)), ring_bytes, n
    if strategy in ("ddp_fp16", "ddp_bf16"):
        return ring, ring_bytes / 2, n
    if strategy == "allreduce_fp16":  # all_gather of halves: every rank receives all others'
        return p - 1, (p - 1) * 2 * n, p * n
    if strategy == "reduce_broadcast":
        # gloo's reduce: a ring reduce-scatter, then every rank's share sent to the root; its
        # broadcast: a binomial tree, the root sending the whole buffer once per level.
        return 2 * (p - 1) + lg, ((p - 1) / p + lg) * 4 * n, n
    if strategy == "hierarchical":  # loopback within nodes, a ring of N leaders between them
        return 2 * math.ceil(math.log2(r)) + 2 * (N - 1), 2 * (N - 1) / N * 4 * n, n
    if strategy == "ddp_powersgd":  # three all_reduces: the uncompressed part, Ps, Qs
        c = powersgd_floats(g.hidden)
        return 3 * ring, 2 * (p - 1) / p * 4 * c, n
    raise ValueError(f"no cost model for strategy {strategy!r}")


def features(strategy: str, g: Point, bits_per_s: float, burst: int = 0) -> tuple[float, np.ndarray]:
    """(messages, [1, seconds on the link, floats]): the known latency count and the fitted terms.
    `burst`: bytes the link lets through at once (the emulator's token bucket, refilled between
    synchronizations); a real link has none."""
    steps, nbytes, floats = shape(strategy, g)
    return steps, np.array([1.0, max(0.0, nbytes - burst) * 8 / bits_per_s, floats])


def measured_features(strategy: str, row: dict) -> tuple[float, np.ndarray]:
    rate = None if row["bandwidth"] == "unshaped" else row["bandwidth"]
    return features(strategy, point_of(row), row["link_mbit_s"] * 1e6, bucket_bytes(rate))


def fit(strategy: str, rows: list[dict], alphas: list[float]) -> np.ndarray:
    """c (s per call), beta (a multiplier on the link's time, ~1), gamma (s per float), each >= 0,
    by non-negative least squares on relative error; `alphas`: each row's message latency."""
    parts = [measured_features(strategy, r) for r in rows]
    y = np.array([r["median_ms"] / 1e3 for r in rows])
    known = np.array([steps * a for (steps, _), a in zip(parts, alphas)])
    A, b = np.array([x for _, x in parts]) / y[:, None], 1 - known / y
    coef = np.zeros(3)
    active = list(range(3))
    while active:  # drop the most negative coefficient until none is (3 unknowns: a few passes)
        sol, *_ = np.linalg.lstsq(A[:, active], b, rcond=None)
        if (sol >= 0).all():
            coef[:] = 0
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return coef


def point_of(row: dict) -> Point:
    return Point(row["nodes"], row["ranks_per_node"], row["grad_floats"], row["hidden"])


def predict(strategy: str, coef: np.ndarray, g: Point, bits_per_s: float, alpha_s: float) -> float:
    steps, x = features(strategy, g, bits_per_s)
    return steps * alpha_s + float(x @ coef)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--measured", type=Path, default=Path("benchmarks/results/bench_cluster.json"))
    parser.add_argument("--held-out-bandwidths", nargs="+", default=["1gbit"])
    parser.add_argument("--held-out-hidden", type=int, nargs="+", default=[96])
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--ranks-per-node", type=int, default=8)
    parser.add_argument(
        "--latency-us", type=float, default=50.0, help="one message's latency on the extrapolated network"
    )
    parser.add_argument(
        "--period", type=int, default=8, help="local_sgd's sync.period, to state its cost per update"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if not args.measured.exists():
        parser.error(f"{args.measured} does not exist: run benchmarks/bench_cluster.py first")
    every = json.loads(args.measured.read_text())["rows"]
    measured = [r for r in every if r["strategy"] != "floor_1_float"]
    if not measured:
        parser.error(f"{args.measured} holds no measurements (bench_cluster was skipped?)")
    job = ("nodes", "ranks_per_node", "bandwidth", "hidden")
    floors = {tuple(r[k] for k in job): r for r in every if r["strategy"] == "floor_1_float"}

    def alpha(r: dict) -> float:  # seconds per message: the job's own 1-float all_reduce
        floor = floors[tuple(r[k] for k in job)]
        return floor["median_ms"] / 1e3 / (2 * (floor["world_size"] - 1))

    def held_out(r: dict) -> bool:
        return r["bandwidth"] in args.held_out_bandwidths or r["hidden"] in args.held_out_hidden

    strategies = list(dict.fromkeys(r["strategy"] for r in measured))
    coefs, checks = {}, []
    for s in strategies:
        mine = [r for r in measured if r["strategy"] == s]
        # Rows with more ranks than cores time CPU sharing as much as the link: shown, not fitted.
        train = [r for r in mine if not held_out(r) and not r["oversubscribed"]]
        if not train:
            parser.error(f"{s}: no measured point to fit (every one held out or oversubscribed)")
        coefs[s] = fit(s, train, [alpha(r) for r in train])
        for r in mine:
            steps, x = measured_features(s, r)
            pred = (steps * alpha(r) + float(x @ coefs[s])) * 1e3
            inside = r["p25_ms"] <= pred <= r["p75_ms"]
            error = pred / r["median_ms"] - 1
            checks.append(
                r | {"predicted_ms": pred, "error": error, "held_out": held_out(r), "in_iqr": inside}
            )
    rows = [
        {"kind": "fit", "strategy": s, "call_us": c[0] * 1e6, "beta": c[1], "gamma_ns_per_float": c[2] * 1e9}
        for s, c in coefs.items()
    ]
    alphas = [alpha(r) for r in measured if not r["oversubscribed"]]
    measured_alpha_us = statistics.median(alphas) * 1e6 if alphas else float("nan")
    rows.append({"kind": "latency", "measured_alpha_us": measured_alpha_us})
    rows += [{"kind": "check"} | c for c in checks]
    extrapolated = extrapolate(measured, strategies, coefs, args)
    rows += extrapolated
    shown = ("allreduce", "hierarchical", "ddp_powersgd")
    header = (
        "network",
        "ranks",
        "hidden",
        *(f"{s} ms" for s in shown),
        f"local_sgd ms/update (period {args.period})",
        "fastest",
        "fastest, exact math",
    )
    table = [
        (
            e["network"],
            e["ranks"],
            e["hidden"],
            *(f"{e['ms'].get(s, float('nan')):.2f}" for s in shown),
            f"{e['ms'].get('local_sgd', float('nan')) / args.period:.2f}",
            e["fastest"],
            e["fastest_exact"],
        )
        for e in extrapolated
    ]
    write_report(
        "cost_model",
        args,
        header,
        table,
        rows,
        summary(checks, coefs, args, measured_alpha_us),
        args.out,
        plot=lambda _, path: _plot(checks, extrapolated, strategies, path),
    )
    return 0


INEXACT = ("local_sgd", "ddp_powersgd", "ddp_bf16", "ddp_fp16", "allreduce_fp16")  # change the math


def extrapolate(measured: list[dict], strategies: list[str], coefs: dict, args) -> list[dict]:
    """Predicted ms per synchronization on each network, rank count and agent size; the fastest per
    update (local_sgd pays its average once per period) and the fastest that keeps the math."""
    out = []
    for network, bits in NETWORKS.items():
        for p in args.ranks:
            for hidden in sorted({r["hidden"] for r in measured}):
                floats = next(r["grad_floats"] for r in measured if r["hidden"] == hidden)
                g = Point(max(1, p // args.ranks_per_node), min(p, args.ranks_per_node), floats, hidden)
                ms = {s: predict(s, coefs[s], g, bits, args.latency_us * 1e-6) * 1e3 for s in strategies}
                per_update = ms | ({"local_sgd": ms["local_sgd"] / args.period} if "local_sgd" in ms else {})
                exact = {s: v for s, v in per_update.items() if s not in INEXACT}
                out.append(
                    {
                        "kind": "extrapolated",
                        "network": network,
                        "ranks": p,
                        "hidden": hidden,
                        "floats": floats,
                        "ms": ms,
                        "fastest": min(per_update, key=per_update.get),
                        "fastest_exact": min(exact, key=exact.get),
                    }
                )
    return out


def summary(checks: list[dict], coefs: dict, args, measured_alpha_us: float) -> str:
    held_checks = [c for c in checks if c["held_out"] and not c["oversubscribed"]]
    held = [abs(c["error"]) for c in held_checks]
    missed = [c for c in held_checks if abs(c["error"]) > 0.25]
    fitted = [abs(c["error"]) for c in checks if not c["held_out"] and not c["oversubscribed"]]
    crowded = [c["error"] for c in checks if c["oversubscribed"]]
    lines = []
    if fitted:
        med, worst = statistics.median(fitted), max(fitted)
        lines.append(f"fitted on {len(fitted)} measured points: median |error| {med:.0%}, max {worst:.0%}")
    if held:
        med, worst, within = statistics.median(held), max(held), sum(e <= 0.25 for e in held)
        lines.append(
            f"held out {len(held)} points (bandwidths {' '.join(args.held_out_bandwidths)}, hidden "
            f"{' '.join(map(str, args.held_out_hidden))}): median |error| {med:.0%}, max {worst:.0%}, "
            f"{within}/{len(held)} within 25%"
            + (
                f"; of the {len(missed)} beyond, {sum(c['in_iqr'] for c in missed)} fall inside the "
                "measurement's own interquartile range"
                if missed
                else ""
            )
        )
    if crowded:
        lines.append(
            f"{len(crowded)} points with more ranks than cores, not fitted: the model is off by a median "
            f"{statistics.median(crowded):+.0%} (time-sharing the cores, not the link)"
        )
    lines.append(
        f"extrapolated: {args.ranks_per_node} ranks per node, {args.latency_us:g} us per message "
        f"(measured here: {measured_alpha_us:.0f} us, loopback and veth through gloo)"
    )
    lines += [
        f"{s}: c {c[0] * 1e6:.0f} us per call, beta {c[1]:.2f}, gamma {c[2] * 1e9:.2f} ns/float"
        for s, c in coefs.items()
    ]
    return "\n".join(lines)


def _plot(checks: list[dict], extrapolated: list[dict], strategies: list[str], path: Path) -> None:
    hiddens = sorted({e["hidden"] for e in extrapolated})
    networks = list(dict.fromkeys(e["network"] for e in extrapolated))
    with saved_figure(path, ncols=1 + len(networks), figsize=(4.5 * (1 + len(networks)), 4)) as (_, axes):
        ax = axes[0]
        for s in strategies:
            pts = [c for c in checks if c["strategy"] == s]
            ax.scatter([c["median_ms"] for c in pts], [c["predicted_ms"] for c in pts], s=10, label=s)
        lo = min(c["median_ms"] for c in checks)
        hi = max(c["median_ms"] for c in checks)
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.plot([lo, hi], [lo * 1.25, hi * 1.25], "k:", lw=0.8)
        ax.plot([lo, hi], [lo * 0.75, hi * 0.75], "k:", lw=0.8)
        ax.set(
            title="model vs measured (dotted: +-25%)",
            xlabel="measured ms",
            ylabel="predicted ms",
            xscale="log",
            yscale="log",
        )
        ax.legend(fontsize=6)
        hidden = hiddens[0]
        for ax, network in zip(axes[1:], networks):
            sub = [e for e in extrapolated if e["network"] == network and e["hidden"] == hidden]
            for s in strategies:
                ax.plot([e["ranks"] for e in sub], [e["ms"][s] for e in sub], marker="o", label=s)
            ax.set(
                title=f"extrapolated, {network}, hidden {hidden}",
                xlabel="ranks",
                ylabel="ms per synchronization",
                xscale="log",
                yscale="log",
            )


if __name__ == "__main__":
    sys.exit(main())
