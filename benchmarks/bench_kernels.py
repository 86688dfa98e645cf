"""Two builds of the native runtime side by side: the default update at several batches, played with
dist_vpg/native/kernels.c as it is (base) and as a variant (other compiler flags, or another copy of
the source), both loaded in one process and timed in interleaved rounds on one core, so that machine
drift hits them alike. Also where the base update's time goes: in the update training runs (one
C call, dv_update, then clipping and RMSprop) and in the one the DDP strategies run (acting, the
loss and the LSTM's backward in a call each, autograd taking their gradient), each C call's time
and the rest (Python, torch, the hand-over).

    python benchmarks/bench_kernels.py [--flags "-mprefer-vector-width=256"] [--batches 16 64 256]
    python benchmarks/bench_kernels.py --source /tmp/kernels_tile8.c [--rounds 15] [--quick] [--out DIR]

The ratio is base / variant per round (above 1: the variant is faster), its median and range over
the rounds; a variant that computes other numbers is not caught here (tests/test_native.py is).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_rollout import update_fn  # noqa: E402
from benchmarks.common import write_report  # noqa: E402
from dist_vpg import native, pinning  # noqa: E402
from dist_vpg.native import build  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

KERNELS = ("dv_update", "dv_stage", "dv_act", "dv_a2c_loss", "dv_lstm_backward", "dv_clip_rmsprop")
UPDATES_PER_ROUND = 10
SPLIT_MODES = ("native", "native_autograd")  # the update as training runs it, and as DDP's strategies do


def using(library):
    """Make the native path call `library` (native._library is the one place it looks it up)."""
    native._library = lambda: library


def timed_calls(library, spent: dict[str, float]):
    """A stand-in for `library` whose KERNELS add their seconds to `spent`."""

    class Timed:
        def __getattr__(self, name):
            found = getattr(library, name)
            if name not in KERNELS:
                return found

            def call(*args):
                start = time.perf_counter()
                result = found(*args)
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
                return result

            return call

    return Timed()


def compare(libraries: dict, batch: int, rounds: int) -> dict:
    fns = {}
    for name, library in libraries.items():
        using(library)
        fns[name] = update_fn("native", batch)
        for _ in range(3):
            fns[name]()
    ms: dict[str, list[float]] = {name: [] for name in libraries}
    for _ in range(rounds):
        for name, library in libraries.items():
            using(library)
            start = time.perf_counter()
            for _ in range(UPDATES_PER_ROUND):
                fns[name]()
            ms[name].append((time.perf_counter() - start) / UPDATES_PER_ROUND * 1e3)
    ratios = [b / v for b, v in zip(ms["base"], ms["variant"])]
    return {
        "batch": batch,
        "base_ms": statistics.median(ms["base"]),
        "variant_ms": statistics.median(ms["variant"]),
        "ratio": statistics.median(ratios),
        "ratio_low": min(ratios),
        "ratio_high": max(ratios),
    }


def split(library, batch: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median ms per update in each C call of the base build, and outside them, for each of
    SPLIT_MODES in interleaved rounds: the update training runs (`native`: dv_update, then clipping
    and RMSprop) and the one the DDP strategies run (`native_autograd`: acting, the loss and the
    LSTM's backward in a call each)."""
    spent: dict[str, float] = {}
    using(timed_calls(library, spent))
    fns = {mode: update_fn(mode, batch) for mode in SPLIT_MODES}
    per_round: dict[str, list[dict]] = {mode: [] for mode in SPLIT_MODES}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for mode, fn in fns.items():
            spent.clear()
            start = time.perf_counter()
            for _ in range(UPDATES_PER_ROUND):
                fn()
            total = (time.perf_counter() - start) / UPDATES_PER_ROUND * 1e3
            c_ms = {k: v / UPDATES_PER_ROUND * 1e3 for k, v in spent.items()}
            per_round[mode].append({**c_ms, "outside_c": total - sum(c_ms.values()), "total": total})
    return {
        mode: {key: statistics.median(r.get(key, 0.0) for r in found) for key in found[0]}
        for mode, found in per_round.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--flags",
        default="-mprefer-vector-width=256",
        help="compiler flags the variant adds ('' for none); the default undoes the package's 512-bit width",
    )
    parser.add_argument("--source", type=Path, help="the variant's kernels.c (default: the package's)")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="batches 16, 3 rounds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.rounds = [16], 3
    if not args.flags and args.source is None:
        parser.error("the variant is the base itself: give --flags or --source")
    torch.set_num_threads(1)
    pinning.retain_freed_memory()  # as training does (cpu.retain_freed)
    try:
        base = build.load()
        flags = tuple(args.flags.split())
        variant = build.load(build.Source(args.source or build.SOURCE, build.DECLARED, flags))
    except build.NativeUnavailable as e:
        print(f"bench_kernels: {e}", file=sys.stderr)
        return 2
    libraries = {"base": base, "variant": variant}
    rows = []
    for batch in args.batches:
        found = split(base, batch, args.rounds)
        rows.append(
            compare(libraries, batch, args.rounds)
            | {"split_ms": found["native_autograd"], "one_call_ms": found["native"]}
        )
    using(base)
    header = ["episodes", "base ms", "variant ms", "base / variant (range)", "base in C", "outside C"]
    header += ["three calls: in C", "outside C"]
    table = [
        [
            r["batch"],
            f"{r['base_ms']:.2f}",
            f"{r['variant_ms']:.2f}",
            f"{r['ratio']:.3f} ({r['ratio_low']:.2f}-{r['ratio_high']:.2f})",
            f"{r['one_call_ms']['total'] - r['one_call_ms']['outside_c']:.2f}",
            f"{r['one_call_ms']['outside_c']:.2f}",
            f"{r['split_ms']['total'] - r['split_ms']['outside_c']:.2f}",
            f"{r['split_ms']['outside_c']:.2f}",
        ]
        for r in rows
    ]
    variant_name = str(args.source) if args.source else "kernels.c"
    note = f"variant: {variant_name} with flags '{args.flags}'; medians of {args.rounds} interleaved rounds"
    write_report("bench_kernels", args, header, table, rows, note, args.out, plot=_plot)
    return 0


def _plot(rows, path: Path) -> None:
    with saved_figure(path, figsize=(6.4, 4.0)) as (_, ax):
        batches = [r["batch"] for r in rows]
        ax.plot(batches, [r["ratio"] for r in rows], "o-", label="base / variant (median)")
        ax.fill_between(batches, [r["ratio_low"] for r in rows], [r["ratio_high"] for r in rows], alpha=0.2)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("episodes an update")
        ax.set_ylabel("time ratio (above 1: variant faster)")
        ax.legend()


if __name__ == "__main__":
    sys.exit(main())
