"""What fault tolerance costs: a checkpoint per update, and the time a killed rank costs the job.

    python benchmarks/bench_restart.py [--updates 600] [--every 100] [--saves 50] [--quick]

1. Checkpoint cost: the median time of rank 0's atomic save (torch.save to a temporary file, fsync,
   rename, directory fsync) of the default agent and its optimizer, over --saves saves, and that
   time spread over the --every updates between checkpoints.
2. Restart time: a 2-rank job of the default config under torchrun --max-restarts 1 with
   train.resume=auto; once checkpoint 2 x --every exists, rank 1 gets SIGKILL. Measured from the
   kill: until the restarted group announces the resume, and until it logs its first update.
   The updates replayed are those between the checkpoint and the kill.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import write_report  # noqa: E402
from dist_vpg import checkpoint, config, train  # noqa: E402
from dist_vpg.agent import Agent  # noqa: E402
from dist_vpg.plots import saved_figure  # noqa: E402
from dist_vpg.rollout import input_size  # noqa: E402
from dist_vpg.tasks import make_task  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def checkpoint_ms(saves: int) -> float:
    cfg = config.load()
    task = make_task(cfg.task)
    agent = Agent(input_size(task, cfg.task.trial_input), task.num_actions, cfg.agent.hidden)
    optimizer = train.make_optimizer(cfg, agent)
    logits, values = agent(torch.zeros(2, 1, input_size(task, cfg.task.trial_input)))
    (logits.sum() + values.sum()).backward()
    optimizer.step()  # the optimizer has its state, as in a real checkpoint
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for update in range(1, saves + 1):
            started = time.perf_counter()
            checkpoint.save_training_state(Path(tmp), cfg, update, agent, optimizer, None)
            times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def restart_s(updates: int, every: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        cmd += ["--max-restarts", "1", "-m", "dist_vpg.train", f"train.updates={updates}"]
        cmd += [f"checkpoint.every={every}", "train.resume=auto", f"run_dir={run_dir}", "log.every=10"]
        cmd += ["log.progress=lines", "cpu.threads=1", "eval.every=0"]
        env = dict(os.environ, TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")  # as launch.sh sets it
        job = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        events: dict[str, float] = {}
        last_update, lines = [0], []

        def watch():
            for line in job.stdout:
                now = time.perf_counter()
                lines.append(line)
                if (m := re.match(r"update (\d+)/", line)) is not None:
                    last_update[0] = int(m.group(1))
                    if "resumed" in events and "first_update" not in events:
                        events["first_update"] = now
                if "resuming from" in line:
                    events["resumed"] = now

        reader = threading.Thread(target=watch, daemon=True)
        reader.start()
        while not checkpoint.path_for(run_dir, 2 * every).exists():
            time.sleep(0.02)
        victim = next(
            p
            for p in psutil.Process(job.pid).children(recursive=True)
            if p.environ().get("RANK") == "1" and "dist_vpg.train" in " ".join(p.cmdline())
        )
        killed_after = last_update[0]
        events["kill"] = time.perf_counter()
        victim.send_signal(signal.SIGKILL)
        job.wait()
        reader.join(timeout=10)
        if job.returncode != 0 or "first_update" not in events:
            tail = "".join(line for line in lines if not line.startswith("update"))[-6000:]
            raise RuntimeError(f"the restarted job did not finish (exit {job.returncode}):\n{tail}")
        return {
            "to_resume_s": events["resumed"] - events["kill"],
            "to_first_update_s": events["first_update"] - events["kill"],
            "killed_near_update": killed_after,
            "resumed_from": 2 * every,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--updates", type=int, default=600)
    parser.add_argument("--every", type=int, default=100, help="checkpoint.every of the restart job")
    parser.add_argument("--saves", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.updates, args.every, args.saves = 60, 10, 10
    save_ms = checkpoint_ms(args.saves)
    restart = restart_s(args.updates, args.every)
    per_update = save_ms / 200  # the default checkpoint.every
    rows = [{"checkpoint_ms": save_ms, "checkpoint_ms_per_update_at_200": per_update, **restart}]
    table = [
        ["checkpoint save (median)", f"{save_ms:.1f} ms"],
        ["spread over checkpoint.every=200", f"{per_update:.3f} ms per update"],
        ["SIGKILL to resume announced", f"{restart['to_resume_s']:.1f} s"],
        ["SIGKILL to first update logged", f"{restart['to_first_update_s']:.1f} s"],
        ["killed near update / resumed from", f"{restart['killed_near_update']} / {restart['resumed_from']}"],
    ]
    write_report("bench_restart", args, ["what", "figure"], table, rows, "", args.out, plot=_plot)
    return 0


def _plot(rows, path: Path) -> None:
    r = rows[0]
    with saved_figure(path, figsize=(6, 3)) as (_, ax):
        ax.barh(["to resume", "to first update"], [r["to_resume_s"], r["to_first_update_s"]])
        ax.set(xlabel="seconds after SIGKILL of rank 1")


if __name__ == "__main__":
    sys.exit(main())
