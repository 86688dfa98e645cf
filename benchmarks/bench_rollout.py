"""Training throughput of one rank on one core: agent steps per second through the whole update
(rollout, loss, backward, optimizer step), for onepass and twopass, against two references run
side by side in the same process:

- the predecessors' loop: one episode at a time, a Python bandit stepped trial by trial, an LSTM
  cell with batch 1, the A2C loss and one optimizer step per episode;
- the bound: nn.LSTM forward plus backward over the same [T, B] sequence in one fused call, the
  cost of the math alone, with no acting, no task, no heads and no optimizer.

    python benchmarks/bench_rollout.py [--batches 32 64 128 256 512] [--repeats 7] [--quick]

Modes are measured in interleaved rounds, so machine drift hits them alike; figures are medians.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import write_report  # noqa: E402
from dist_vpg import noise  # noqa: E402
from dist_vpg.agent import Agent  # noqa: E402
from dist_vpg.losses import a2c_loss  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402
from dist_vpg.rollout import input_size, rollout  # noqa: E402
from dist_vpg.tasks import Bandit  # noqa: E402

TRIALS, HIDDEN = 100, 48


def update_fn(mode: str, batch: int):
    """One full training update of `batch` episodes; returns agent steps done."""
    task = Bandit(2, "independent", TRIALS)
    agent = Agent(input_size(task, True), task.num_actions, HIDDEN)
    opt = torch.optim.RMSprop(agent.parameters(), lr=7e-4, eps=1e-5)
    counter = iter(range(10**9))

    def run() -> int:
        u = next(counter)
        draws = noise.draw(0, noise.TRAIN, u, np.arange(batch), TRIALS, task.episode_draws, task.trial_draws)
        b = rollout(agent, task, draws, mode, True)
        loss = a2c_loss(b.logits, b.values, b.actions, b.rewards, 0.9, 1.0, 0.05, 0.05)
        opt.zero_grad()
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 50.0)
        opt.step()
        return batch * TRIALS

    return run


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
    """Median steps/s of each fn over `repeats` interleaved rounds (after one warm-up round)."""
    rates = {name: [] for name in fns}
    for i in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            steps = fn()
            if i:
                rates[name].append(steps / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="batches 64 and 128, 3 rounds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.repeats = [64, 128], 3
    torch.set_num_threads(1)
    predecessor = measure({"predecessor": predecessor_fn()}, args.repeats)["predecessor"]
    rows = []
    for batch in args.batches:
        fns = {
            "onepass": update_fn("onepass", batch),
            "twopass": update_fn("twopass", batch),
            "bound": bound_fn(batch),
        }
        rates = measure(fns, args.repeats)
        for mode in ("onepass", "twopass"):
            rows.append(
                {
                    "batch": batch,
                    "mode": mode,
                    "steps_per_s": rates[mode],
                    "bound_steps_per_s": rates["bound"],
                    "of_bound": rates[mode] / rates["bound"],
                    "x_predecessor": rates[mode] / predecessor,
                    "predecessor_steps_per_s": predecessor,
                }
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    header = ("batch", "mode", "steps/s", "bound steps/s", "of bound", "x predecessor")
    table = [
        (
            r["batch"],
            r["mode"],
            f"{r['steps_per_s']:,.0f}",
            f"{r['bound_steps_per_s']:,.0f}",
            f"{r['of_bound']:.0%}",
            f"{r['x_predecessor']:.0f}",
        )
        for r in rows
    ]
    note = (
        f"predecessor loop (one episode at a time): {predecessor:,.0f} steps/s; "
        f"peak resident memory of this process: {peak_mb:.0f} MB; one thread"
    )
    write_report("bench_rollout", args, header, table, rows, note, args.out, plot=_plot)
    return 0


def _plot(rows, path: Path) -> None:
    with saved_figure(path, figsize=(6, 4)) as (_, ax):
        for mode in ("onepass", "twopass"):
            pts = [(r["batch"], r["steps_per_s"]) for r in rows if r["mode"] == mode]
            ax.plot(*zip(*pts), marker="o", label=f"{mode} (whole update)")
        pts = sorted({(r["batch"], r["bound_steps_per_s"]) for r in rows})
        ax.plot(*zip(*pts), marker="s", linestyle="--", label="bound: fused nn.LSTM fwd+bwd")
        ax.axhline(
            rows[0]["predecessor_steps_per_s"], color="grey", linestyle=":", label="predecessors' loop"
        )
        ax.set(xscale="log", yscale="log", xlabel="episodes per update (one rank)", ylabel="agent steps / s")
        ax.legend(fontsize=8)


if __name__ == "__main__":
    sys.exit(main())
