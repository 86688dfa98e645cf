"""What scale buys: each training run's regret at the end, measured by dist_vpg.evaluate, against
the agent steps it trained and against its wall-clock, one point per run.

    python benchmarks/scale_figure.py --out benchmarks/results/scale.png [--add POINTS_JSON]
        "LABEL=RUN_DIR=METRICS_JSON" ...

RUN_DIR's summary.json gives the agent steps and the wall seconds of the run (with its periodic
evaluations); METRICS_JSON is the evaluation of its last checkpoint (`python -m dist_vpg.evaluate
... --out DIR`: DIR/metrics.json). Points of one label are the seeds of one setting. The wall-clock
is the run's own: the caption must say how many ranks and what else shared the machine. Every point
drawn is also written beside the figure (scale.png -> scale.json), so a later run can be added to
the figure without the earlier runs' directories (--add scale.json); a point without a standard
error (null) is drawn without an error bar.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dist_vpg.plots import saved_figure  # noqa: E402


def point(run: Path, metrics: Path) -> tuple[float, float, float, float]:
    """(agent steps, wall s, regret at the end, its standard error)."""
    summary, agent = json.loads((run / "summary.json").read_text()), json.loads(metrics.read_text())["agent"]
    return summary["agent_steps"], summary["wall_s"], agent["regret_at_end"], agent["regret_sem"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="*", metavar="LABEL=RUN_DIR=METRICS_JSON")
    parser.add_argument("--add", type=Path, help="points written by an earlier call (its .json)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--floor", type=float, default=1.748, help="a horizontal reference (Bayes-optimal)")
    parser.add_argument("--clock", default="wall seconds, one rank", help="the wall-clock axis' label")
    args = parser.parse_args(argv)
    points: dict[str, list] = {}
    if args.add:
        for label, found in json.loads(args.add.read_text()).items():
            points.setdefault(label, []).extend(tuple(p) for p in found)
    for spec in args.runs:
        parts = spec.split("=")
        if len(parts) != 3:
            parser.error(f"{spec!r}: expected LABEL=RUN_DIR=METRICS_JSON")
        points.setdefault(parts[0], []).append(point(Path(parts[1]), Path(parts[2])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with saved_figure(args.out, ncols=2, figsize=(11, 4)) as (_, axes):
        for label, found in points.items():
            for ax, i in zip(axes, (0, 1)):
                ax.errorbar(
                    [p[i] for p in found], [p[2] for p in found], yerr=[p[3] or 0.0 for p in found],
                    fmt="o", capsize=3, label=label,
                )  # fmt: skip
        for ax, name in zip(axes, ("agent steps trained", args.clock)):
            ax.axhline(args.floor, color="grey", ls=":", label="Bayes-optimal")
            ax.set(xlabel=name, ylabel="regret at trial 100 (frozen weights)")
        axes[0].legend(fontsize=7)
    args.out.with_suffix(".json").write_text(json.dumps(points, indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
