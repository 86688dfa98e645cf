"""Training throughput of one rank on one core: agent steps per second through the whole update
(rollout, loss, backward, optimizer step), for native (one C call for the rollout, its loss and its
gradient, as every strategy but DDP's trains), native_autograd (three C calls with autograd taking
their gradient, as the DDP strategies train), twopass and onepass, against two references run side
by side in the same process:

- the predecessors' loop: one episode at a time, a Python bandit stepped trial by trial, an LSTM
  cell with batch 1, the A2C loss and one optimizer step per episode;
- the bound: nn.LSTM forward plus backward over the same [T, B] sequence in one fused call, the
  cost of the math alone, with no acting, no task, no heads and no optimizer.

    python benchmarks/bench_rollout.py [--batches 16 32 64 128 256 512] [--repeats 15] [--quick]

Modes are measured in interleaved rounds, so machine drift hits them alike; figures are medians.
The process keeps freed memory as training does (cpu.retain_freed), and each mode steps as training
does (native: clipping and RMSprop in one C pass). A second table splits native_autograd's update
into its phases (acting; heads, loss and whole gradient in C; autograd taking that gradient; clipping
and the optimizer step), and a third gives the peak resident memory of each rank of a short training run at
the default config (2 ranks, torchrun), native and twopass.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import PHASES, write_report  # noqa: E402
from benchmarks.common import update_fn as common_update  # noqa: E402
from dist_vpg import native, pinning  # noqa: E402
from dist_vpg.agent import Agent  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402
from dist_vpg.rollout import input_size  # noqa: E402
from dist_vpg.tasks import Bandit  # noqa: E402

TRIALS, HIDDEN = 100, 48
ROOT = Path(__file__).resolve().parent.parent


def update_fn(mode: str, batch: int, phases: dict[str, list[float]] | None = None):
    """One full training update of `batch` episodes of the default task and agent (common.update_fn)."""
    task = Bandit(2, "independent", TRIALS)
    return common_update(
        task, Agent(input_size(task, True), task.num_actions, HIDDEN), mode, batch, True, phases
    )


def bound_fn(batch: int):
    """nn.LSTM forward + backward over [T, B] in one call: what the math alone costs."""
    lstm = torch.nn.LSTM(5, HIDDEN)
    x = torch.rand(TRIALS, batch, 5)

    def run() -> int:
        lstm.zero_grad()
        out, _ = lstm(x)
        out.sum().backward()
        return batch * TRIALS

    return run


def predecessor_fn(episodes: int = 2):
    """The one-episode-at-a-time loop of the earlier single-process scripts."""
    cell = torch.nn.LSTMCell(5, HIDDEN)
    policy, value = torch.nn.Linear(HIDDEN, 2), torch.nn.Linear(HIDDEN, 1)
    params = [*cell.parameters(), *policy.parameters(), *value.parameters()]
    opt = torch.optim.RMSprop(params, lr=7e-4)
    rng = random.Random(0)

    def run() -> int:
        for _ in range(episodes):
            probs = [rng.random(), rng.random()]
            h, c = torch.zeros(1, HIDDEN), torch.zeros(1, HIDDEN)
            prev_action, prev_reward = 0, 0.0
            log_probs, values, entropies, rewards = [], [], [], []
            for t in range(TRIALS):
                x = torch.zeros(1, 5)
                if t > 0:
                    x[0, prev_action] = 1.0
                    x[0, 2] = prev_reward
                    x[0, 3] = t / TRIALS
                h, c = cell(x, (h, c))
                dist = torch.distributions.Categorical(logits=policy(h))
                action = dist.sample()
                reward = float(rng.random() < probs[action.item()])
                log_probs.append(dist.log_prob(action))
                entropies.append(dist.entropy())
                values.append(value(h).squeeze())
                rewards.append(reward)
                prev_action, prev_reward = action.item(), reward
            returns, acc = [], 0.0
            for r in reversed(rewards):
                acc = r + 0.9 * acc
                returns.insert(0, acc)
            returns = torch.tensor(returns)
            values_t = torch.stack(values)
            adv = returns - values_t.detach()
            loss = (
                -(torch.cat(log_probs) * adv).sum()
                + 0.05 * 0.5 * ((returns - values_t) ** 2).sum()
                - 0.05 * torch.cat(entropies).sum()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        return episodes * TRIALS

    return run


def measure(fns: dict, repeats: int) -> dict[str, float]:
    """Median steps/s of each fn over `repeats` interleaved rounds (after two warm-up rounds)."""
    rates = {name: [] for name in fns}
    for i in range(repeats + 2):
        for name, fn in fns.items():
            start = time.perf_counter()
            steps = fn()
            if i >= 2:
                rates[name].append(steps / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def peak_rss_mb(mode: str, updates: int) -> float:
    """Peak resident memory (MB) of the largest rank of a short 2-rank training run at the default
    config: torchrun waits for its workers, so their peaks reach this process's children figure."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "dist_vpg.train"]
        cmd += [f"train.rollout={mode}", f"train.updates={updates}", "eval.every=0", f"run_dir={tmp}/run"]
        done = subprocess.run(
            [sys.executable, "-c", code, *cmd], cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}, check=True,
        )  # fmt: skip
    return int(done.stdout.split()[-1]) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rss-updates", type=int, default=200, help="updates of the memory run")
    parser.add_argument("--quick", action="store_true", help="batches 16 and 64, 3 rounds, 10 updates")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.repeats, args.rss_updates = [16, 64], 3, 10
    torch.set_num_threads(1)
    pinning.retain_freed_memory()  # as training does (cpu.retain_freed): no page faults per update
    modes = ["native", "native_autograd", "twopass", "onepass"]
    if native.available() is not None:
        print(f"bench_rollout: {native.available()}; measuring the torch modes only")
        modes = ["twopass", "onepass"]
    predecessor = measure({"predecessor": predecessor_fn()}, args.repeats)["predecessor"]
    rows, split = [], []
    for batch in args.batches:
        phases = {name: [] for name in PHASES}
        fns = {mode: update_fn(mode, batch) for mode in modes} | {"bound": bound_fn(batch)}
        if "native" in modes:
            fns["native_autograd (timed by phase)"] = update_fn("native_autograd", batch, phases)
        rates = measure(fns, args.repeats)
        for mode in modes:
            rows.append(
                {
                    "batch": batch,
                    "mode": mode,
                    "steps_per_s": rates[mode],
                    "update_ms": 1e3 * batch * TRIALS / rates[mode],
                    "bound_steps_per_s": rates["bound"],
                    "of_bound": rates[mode] / rates["bound"],
                    "x_twopass": rates[mode] / rates["twopass"],
                    "x_predecessor": rates[mode] / predecessor,
                    "predecessor_steps_per_s": predecessor,
                }
            )
        if "native" in modes:
            split.append(
                {"batch": batch} | {f"{k}_ms": 1e3 * statistics.median(v[2:]) for k, v in phases.items()}
            )
    memory = {mode: peak_rss_mb(mode, args.rss_updates) for mode in modes if mode in ("native", "twopass")}
    header = (
        "batch",
        "mode",
        "update ms",
        "steps/s",
        "bound steps/s",
        "of bound",
        "x twopass",
        "x predecessor",
    )
    table = [
        (
            r["batch"],
            r["mode"],
            f"{r['update_ms']:.2f}",
            f"{r['steps_per_s']:,.0f}",
            f"{r['bound_steps_per_s']:,.0f}",
            f"{r['of_bound']:.2f}",
            f"{r['x_twopass']:.2f}",
            f"{r['x_predecessor']:.0f}",
        )
        for r in rows
    ]
    note = (
        f"predecessor loop (one episode at a time): {predecessor:,.0f} steps/s; one thread\n"
        + "native_autograd's update by phase (ms, medians): "
        + "; ".join(f"{p['batch']}: " + ", ".join(f"{k} {p[k + '_ms']:.2f}" for k in PHASES) for p in split)
        + "\npeak resident memory of a rank, default config on 2 ranks: "
        + ", ".join(f"{mode} {mb:.0f} MB" for mode, mb in memory.items())
    )
    phases_of = {p["batch"]: p for p in split}
    for r in rows:
        r["peak_rss_mb"] = memory.get(r["mode"])
        if r["mode"] == "native_autograd":
            r["phases_ms"] = {k: phases_of[r["batch"]][f"{k}_ms"] for k in PHASES}
    write_report("bench_rollout", args, header, table, rows, note, args.out, plot=_plot)
    return 0


def _plot(rows, path: Path) -> None:
    with saved_figure(path, figsize=(6, 4)) as (_, ax):
        for mode in ("native", "native_autograd", "twopass", "onepass"):
            pts = [(r["batch"], r["steps_per_s"]) for r in rows if r["mode"] == mode]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{mode} (whole update)")
        pts = sorted({(r["batch"], r["bound_steps_per_s"]) for r in rows if "bound_steps_per_s" in r})
        ax.plot(*zip(*pts), marker="s", linestyle="--", label="bound: fused nn.LSTM fwd+bwd")
        ax.axhline(
            rows[0]["predecessor_steps_per_s"], color="grey", linestyle=":", label="predecessors' loop"
        )
        ax.set(xscale="log", yscale="log", xlabel="episodes per update (one rank)", ylabel="agent steps / s")
        ax.legend(fontsize=8)


if __name__ == "__main__":
    sys.exit(main())
