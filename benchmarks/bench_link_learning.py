"""What a sync strategy does to learning on a slow link: evaluated regret against updates and against
wall-clock, each strategy beside allreduce, on two emulated nodes.

    sudo .venv/bin/python benchmarks/bench_link_learning.py [--bandwidth 100mbit]
        [--strategies allreduce "local_sgd sync.period=8"] [--seeds 0 1] [--updates 8000] [--quick]

Two nodes (benchmarks/emulated.py) of one rank each, their links shaped to --bandwidth, train the
default independent-bandit config through launch.sh, once per strategy and seed. During training
the job evaluates every --eval-every updates on fresh VALID episodes (eval.csv: the curve against
updates and training seconds); at the end `dist_vpg.evaluate` plays the final weights on 4000 fresh
EVAL episodes: the figure the table reports, as mean and spread over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import write_report  # noqa: E402
from benchmarks.emulated import EmulatedCluster, Unavailable  # noqa: E402
from dist_vpg import checkpoint, validation  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402

JOB_TIMEOUT_S = 3 * 3600
START_S = 60  # a node that dies this soon after the start died starting up
START_ATTEMPTS = 3


def train(cluster: EmulatedCluster, spec: str, seed: int, args, run_dir: Path, port: int) -> int:
    """One training job over the emulated nodes (eval.csv and the final checkpoint in run_dir).
    Returns how often it was started again: a node that dies within START_S of the start, before
    any work (gloo's start-up inside a namespace has aborted so, rarely, and once twice in a row
    under CI), costs another attempt on another port, up to START_ATTEMPTS in all, its log
    printed; any other failure, or the last attempt's, stops the benchmark with that node's log."""
    overrides = [
        "--config",
        args.config,
        *spec.split()[1:],
        f"sync.strategy={spec.split()[0]}",
        f"seed={seed}",
        f"train.updates={args.updates}",
        f"eval.every={args.eval_every}",
        f"eval.episodes={args.eval_episodes}",
        f"checkpoint.every={args.updates}",
        f"run_dir={run_dir}",
        "tracker.enabled=false",
        "log.tensorboard=false",
        "log.progress=lines",
        "cpu.affinity=none",
        "cpu.threads=1",
    ]
    for attempt in range(START_ATTEMPTS):
        failure = _run_nodes(cluster, overrides, run_dir, port + 1000 * attempt)
        if failure is None:
            return attempt
        node, code, seconds, log = failure
        what = f"{spec} seed {seed}: node {node} failed (exit {code}) {seconds:.0f} s after the start"
        if attempt < START_ATTEMPTS - 1 and seconds < START_S:
            print(f"{what}, during start-up: starting the job again on another port; its log:", flush=True)
            print(log[-2000:], flush=True)
            shutil.rmtree(run_dir, ignore_errors=True)
            continue
        raise RuntimeError(f"{what}:\n{log[-3000:]}")
    raise AssertionError("unreachable")


def _run_nodes(cluster: EmulatedCluster, overrides: list[str], run_dir: Path, port: int):
    """Both nodes' launch.sh, watched together: None when both finish well; else (node, exit code,
    seconds since the start, its log) of the first to fail, the other node stopped at once rather
    than left waiting for a peer that is gone."""
    procs, logs = [], []
    start = time.monotonic()
    for i, node in enumerate(cluster.nodes):
        env = dict(os.environ, NNODES="2", NODE_RANK=str(i), MASTER_ADDR=cluster.nodes[0].address)
        env.update(MASTER_PORT=str(port), NPROC="1", GLOO_SOCKET_IFNAME=node.device)
        cmd = cluster.command(i, [str(ROOT / "launch.sh"), *overrides])
        logs.append(tempfile.TemporaryFile("w+"))
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        )
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
            late = time.monotonic() - start > JOB_TIMEOUT_S
            if all(code == 0 for code in codes):
                return None
            if failed or late:
                node = failed[0] if failed else codes.index(None)
                seconds = time.monotonic() - start
                _stop(procs)
                logs[node].seek(0)
                text = logs[node].read() + ("" if failed else f"\n(no end after {JOB_TIMEOUT_S} s)")
                return node, procs[node].returncode, seconds, text
            time.sleep(0.5)
    finally:
        _stop(procs)
        for log in logs:
            log.close()


def _stop(procs: list[subprocess.Popen]) -> None:
    """Each node's whole process group (launch.sh, torchrun, its workers and the reader of its
    output): a signal to launch.sh alone would leave torchrun behind, waiting for a peer."""
    for p in procs:
        _signal_group(p, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.wait()
        _signal_group(p, signal.SIGKILL)  # what outlived launch.sh


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def evaluate(run_dir: Path, episodes: int) -> dict:
    """The final weights on fresh EVAL episodes (one process)."""
    final = checkpoint.existing(run_dir)[-1]
    out = run_dir / "evaluation"
    cmd = [sys.executable, "-m", "dist_vpg.evaluate", "--checkpoint", str(final), "--episodes", str(episodes)]
    done = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"evaluating {final} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "metrics.json").read_text())["agent"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/bandit_independent.yaml")
    parser.add_argument("--bandwidth", default="100mbit")
    parser.add_argument("--strategies", nargs="+", default=["allreduce", "local_sgd sync.period=8"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--updates", type=int, default=8000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=1000)
    parser.add_argument("--final-episodes", type=int, default=4000)
    parser.add_argument("--quick", action="store_true", help="the smoke config for 40 updates, one seed")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.quick:
        args.config, args.updates, args.eval_every, args.eval_episodes = "configs/smoke.yaml", 40, 20, 100
        args.seeds, args.final_episodes = [0], 200
    rows, skipped, port = [], "", 29711
    try:
        with EmulatedCluster(2) as cluster, tempfile.TemporaryDirectory() as tmp:
            cluster.shape(args.bandwidth)
            for spec in args.strategies:
                for seed in args.seeds:
                    print(f"{spec}, seed {seed} ...", flush=True)
                    run_dir = Path(tmp) / f"{spec.replace(' ', '_')}-{seed}"
                    restarts = train(cluster, spec, seed, args, run_dir, port)
                    port += 1
                    final = evaluate(run_dir, args.final_episodes)
                    curve = validation.read(run_dir / validation.FILE)
                    row = {"strategy": spec, "seed": seed, "final": final, "curve": curve}
                    rows.append({**row, "restarts": restarts})
    except Unavailable as e:
        skipped = f"skipped: {e}"
        print(f"bench_link_learning: {skipped}", file=sys.stderr)
    table = []
    for spec in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == spec]
        regrets = [r["final"]["regret_at_end"] for r in mine]
        secs = [r["curve"][-1]["train_s"] for r in mine]
        spread = statistics.stdev(regrets) if len(regrets) > 1 else float("nan")
        table.append(
            (
                spec,
                len(mine),
                int(mine[0]["curve"][-1]["update"]),
                f"{statistics.mean(secs):.0f}",
                f"{statistics.mean(regrets):.3f} ± {spread:.3f}",
                " ".join(f"{x:.3f}" for x in regrets),
            )
        )
    header = (
        "strategy",
        "seeds",
        "updates",
        "train s (mean)",
        "EVAL regret (mean ± sd over seeds)",
        "per seed",
    )
    note = skipped or (
        f"2 nodes x 1 rank, links shaped to {args.bandwidth}; EVAL: {args.final_episodes} fresh episodes "
        f"per seed, frozen final weights; the curves: {args.eval_episodes} VALID episodes every "
        f"{args.eval_every} updates"
    )
    write_report(
        "bench_link_learning", args, header, table, rows, note, args.out, plot=_plot if rows else None
    )
    return 0


def _plot(rows, path: Path) -> None:
    with saved_figure(path, ncols=2, figsize=(11, 4)) as (_, (by_update, by_time)):
        colors = {}
        for r in rows:
            color = colors.setdefault(r["strategy"], f"C{len(colors)}")
            label = r["strategy"] if r["seed"] == min(x["seed"] for x in rows) else None
            regret = [c["regret"] for c in r["curve"]]
            by_update.plot([c["update"] for c in r["curve"]], regret, color=color, label=label)
            by_time.plot([c["train_s"] for c in r["curve"]], regret, color=color, label=label)
        for ax, xlabel in ((by_update, "updates"), (by_time, "training seconds")):
            ax.set(xlabel=xlabel, ylabel="evaluated regret at the last trial (VALID)", yscale="log")
            ax.grid(alpha=0.3)
        by_update.legend()


if __name__ == "__main__":
    sys.exit(main())
