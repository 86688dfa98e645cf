"""Every registered task's whole training update on one core at its shipped config's batch, native
against twopass, measured side by side: agent steps per second through rollout, loss, backward and
the optimizer step, and the ratio. A task without a native step shows twopass alone.

    python benchmarks/bench_tasks.py [--repeats 15] [--quick] [--out DIR]

Modes are measured in interleaved rounds, so machine drift hits them alike; figures are medians.
The process keeps freed memory as training does (cpu.retain_freed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import update_fn as common_update  # noqa: E402
from benchmarks.common import write_report  # noqa: E402
from dist_vpg import config, native, pinning, tasks  # noqa: E402
from dist_vpg.agent import Agent  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402
from dist_vpg.rollout import input_size  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# each task's shipped config: its batch, horizon and agent (its training settings do not matter here)
CONFIGS = {
    "bandit": "configs/bandit_independent.yaml",
    "two_step": "configs/two_step.yaml",
    "informative_arms": "configs/informative_arms.yaml",
    "restless": "configs/restless.yaml",
    "harlow": "configs/harlow.yaml",
}


def update_fn(cfg: config.Config, mode: str, batch: int):
    """One whole training update of `batch` episodes of cfg's task and agent (common.update_fn)."""
    task = tasks.make_task(cfg.task)
    agent = Agent(input_size(task, cfg.task.trial_input), task.num_actions, cfg.agent.hidden)
    return common_update(task, agent, mode, batch, cfg.task.trial_input)


def measure(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, measured in interleaved rounds after one warm-up call."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def plot(rows, path: Path) -> None:
    names = sorted({r["task"] for r in rows}, key=list(CONFIGS).index)
    with saved_figure(path, figsize=(7, 4)) as (_, ax):
        for k, mode in enumerate(("twopass", "native")):
            found = {r["task"]: r["steps_per_s"] for r in rows if r["mode"] == mode}
            x = [i + (k - 0.5) * 0.38 for i, n in enumerate(names) if n in found]
            ax.bar(x, [found[n] for n in names if n in found], 0.36, label=mode)
        ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names])
        ax.set(ylabel="agent steps / s (one core, whole update)")
        ax.legend()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 rounds at a quarter of each batch")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pinning.retain_freed_memory()  # as training does (cpu.retain_freed): no page faults per update
    repeats = 3 if args.quick else args.repeats
    rows, table = [], []
    for name, path in CONFIGS.items():
        cfg = config.load(ROOT / path, ["train.init_from="])
        batch = max(4, cfg.train.batch_episodes // (4 if args.quick else 1))
        task = tasks.make_task(cfg.task)
        modes = ["twopass"] + (["native"] if native.available(task) is None else [])
        medians = measure({m: update_fn(cfg, m, batch) for m in modes}, repeats)
        steps = batch * task.trials
        for mode in modes:
            ratio = medians["twopass"] / medians[mode]
            per_s, ms = steps / medians[mode], 1e3 * medians[mode]
            rows.append(
                dict(
                    task=name,
                    mode=mode,
                    batch=batch,
                    steps=task.trials,
                    median_ms=ms,
                    steps_per_s=per_s,
                    x_twopass=ratio,
                )
            )
            table.append([name, mode, batch, task.trials, f"{ms:.2f}", f"{per_s:,.0f}", f"{ratio:.2f}"])
    note = "one thread; medians of interleaved rounds; x_twopass = twopass's time / this mode's"
    header = ["task", "mode", "episodes", "steps", "update ms", "steps/s", "x twopass"]
    write_report("bench_tasks", args, header, table, rows, note, args.out, plot)


if __name__ == "__main__":
    main()
