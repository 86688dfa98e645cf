"""What every benchmark writes: a table on stdout, JSON with the provenance, a PNG plot."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

PHASES = ("act", "loss", "backward", "step")  # backward: autograd taking the native gradient
LOSS = dict(gamma=0.9, lam=1.0, beta_v=0.05, beta_e=0.05)


def update_fn(task, agent, mode: str, batch: int, trial_input: bool, phases: dict | None = None):
    """One whole training update of `batch` episodes in `mode`, as train.py runs it: `native` the
    one C call (native.Update) then the strategies' clip_and_step, as every strategy but DDP's
    trains; `native_autograd` the three calls with autograd taking their gradient, as the DDP
    strategies train; twopass and onepass rollout_loss and backward. The returned function plays
    a fresh batch each call and returns the agent steps done. With `phases`, `native_autograd`
    appends the seconds of each of its PHASES to it: acting, the heads, loss and whole gradient
    (C), autograd taking that gradient, and clipping with the optimizer step."""
    from dist_vpg import native, noise
    from dist_vpg.rollout import rollout_loss
    from dist_vpg.sync import clip_and_step

    rmsprop = native.RMSprop if mode.startswith("native") else torch.optim.RMSprop
    opt = rmsprop(agent.parameters(), lr=7e-4, eps=1e-5)
    params, counter = list(agent.parameters()), iter(range(10**9))
    one_call = native.Update(agent) if mode == "native" else None

    def run() -> int:
        draws = noise.draw(
            0, noise.TRAIN, next(counter), np.arange(batch), task.trials, task.episode_draws, task.trial_draws
        )
        marks = [time.perf_counter()]
        opt.zero_grad(set_to_none=False)
        if one_call is not None:
            one_call(task, draws, trial_input, "reward", 1.0, **LOSS)
        elif phases is None:
            torch_mode = mode.removesuffix("_autograd")
            _, loss = rollout_loss(agent, task, draws, torch_mode, trial_input, "reward", LOSS)
            loss.total.backward()
        else:  # the three calls, cut where their phases meet
            played = native.act(agent, task, draws, trial_input)
            marks.append(time.perf_counter())
            loss = native.a2c_loss(played, agent, played.rewards, **LOSS)
            marks.append(time.perf_counter())
            loss.total.backward()
            marks.append(time.perf_counter())
        clip_and_step(params, opt, 50.0)
        marks.append(time.perf_counter())
        if phases is not None:
            for name, start, end in zip(PHASES, marks, marks[1:]):
                phases[name].append(end - start)
        return batch * task.trials

    return run


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """25th, 50th and 75th percentiles."""
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return q[0], statistics.median(samples), q[2]


def provenance() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "gloo": torch.distributed.is_gloo_available(),
        "python": platform.python_version(),
        "git_commit": commit,
    }


def format_table(header, rows) -> str:
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report(name: str, args, header, table, rows, note: str, out: Path, plot=None) -> Path:
    """Print the table; write out/NAME.json (config, provenance, rows) and out/NAME.png."""
    text = format_table(header, table)
    print(text)
    if note:
        print(note)
    out.mkdir(parents=True, exist_ok=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {"benchmark": name, "config": config, "provenance": provenance(), "rows": rows, "note": note}
    path = out / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    if plot is not None:
        plot(rows, out / f"{name}.png")
    print(f"wrote {path}" + (f" and {out / (name + '.png')}" if plot else ""))
    return path


def train_until(cmd: list[str], run_dir: Path, targets: list[float]) -> tuple[list[dict], dict, str]:
    """Run a training command (its run_dir = `run_dir`) until one of its periodic evaluations
    (eval.csv) scores a regret below the lowest target, then stop it with SIGTERM (the trainer saves
    a checkpoint and leaves), or until it ends. Returns eval.csv's rows, the seconds from launch at
    which each target was first seen crossed, and the job's standard error."""
    import signal

    from dist_vpg import validation

    started = time.perf_counter()
    root = Path(__file__).resolve().parent.parent
    job = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    csv_path, walls, lowest = run_dir / validation.FILE, {}, min(targets)
    while job.poll() is None:
        time.sleep(0.5)
        rows = validation.read(csv_path) if csv_path.exists() else []
        for target in targets:
            if target not in walls and any(r["regret"] < target for r in rows):
                walls[target] = time.perf_counter() - started
        if lowest in walls and job.returncode is None:
            job.send_signal(signal.SIGTERM)
            job.wait()
    _, err = job.communicate()
    return (validation.read(csv_path) if csv_path.exists() else []), walls, err
