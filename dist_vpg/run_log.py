"""What rank 0 shows: TensorBoard event files, and a progress bar or plain log lines.

Tag groups: charts/ (returns, regret, entropy, schedules), losses/ (loss terms, gradient norms),
comm/ (synchronization time per strategy, skipped updates), perf/ (time per phase, steps per second).
Other ranks get a Board that does nothing, so the training loop never asks who it is.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from dist_vpg.config import LogConfig

if TYPE_CHECKING:
    from dist_vpg.metrics import Window


class Board:
    def __init__(self, run_dir: Path, cfg: LogConfig, updates: int, enabled: bool):
        self.enabled = enabled
        self.writer = None
        self.bar = None
        if not enabled:
            return
        if cfg.tensorboard:
            self.writer = EventFile(run_dir / "tb")
        # launch.sh reads torchrun's standard error through a pipe; it says when that ends on a terminal
        terminal = sys.stderr.isatty() or os.environ.get("DIST_VPG_STDERR_TTY") == "1"
        use_bar = cfg.progress == "bar" or (cfg.progress == "auto" and terminal)
        if use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=updates, unit="update", dynamic_ncols=True)

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def scalars(self, step: int, groups: dict[str, dict[str, float]]) -> None:
        def write(writer):
            for group, values in groups.items():
                for name, value in values.items():
                    writer.add_scalar(f"{group}/{name}", value, step)
            writer.flush()  # a live run shows in TensorBoard at every log line

        self._write(write)

    def histograms(self, step: int, agent: nn.Module) -> None:
        def write(writer):
            for name, p in agent.named_parameters():
                _histogram(writer, f"weights/{name}", p.detach().numpy(), step)
                if p.grad is not None:
                    _histogram(writer, f"grads/{name}", p.grad.numpy(), step)
            writer.flush()

        self._write(write)

    def _write(self, write) -> None:
        """TensorBoard is a view of the run, not the run: when its files cannot be written (a full
        disk), it stops with one warning and training goes on (the checkpoints decide whether the
        run can). The writer's own thread reports the error on the next call."""
        if self.writer is None:
            return
        try:
            write(self.writer)
        except OSError as e:
            self.writer = None
            self.say(f"dist_vpg: warning: TensorBoard logging stopped ({e.strerror or e}); training goes on")

    def progress(self, done: int, line: str, postfix: dict[str, str]) -> None:
        """Every update: advance the bar; on log updates without a bar, print the line."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(0)
        elif line:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self._write(lambda writer: writer.close())


class EventFile:
    """A TensorBoard event file written in the calling thread. tensorboardX's SummaryWriter writes
    from a thread of its own: when that thread dies (on a full disk, say) the next write blocks
    forever on its queue. Here a failing write raises OSError where Board can catch it."""

    def __init__(self, logdir: Path):
        from tensorboardX.event_file_writer import EventsWriter

        logdir.mkdir(parents=True, exist_ok=True)
        self.events = EventsWriter(str(logdir / "events"))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboardX.summary import scalar

        self._add(scalar(tag, value), step)

    def add_histogram(self, tag: str, values, step: int) -> None:
        from tensorboardX.summary import histogram

        self._add(histogram(tag, values, bins="auto"), step)

    def _add(self, summary, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event

        self.events.write_event(Event(summary=summary, step=step, wall_time=time.time()))

    def flush(self) -> None:
        self.events.flush()

    def close(self) -> None:
        self.events.close()


def log_line(
    done: int,
    updates: int,
    figures: dict,
    ema: float,
    skipped: int,
    window: Window,
    noise: dict | None = None,
    stage: str = "",
) -> str:
    """`stage`: the curriculum stage, as "2/3" (empty for a run without one)."""
    where = f"update {done}/{updates}" + (f" | stage {stage}" if stage else "")
    return (
        f"{where} | episodes {int(window.before[0] + window.totals[0]):,} | return {figures['return']:.2f} "
        f"(ema {ema:.2f}) | regret {figures['regret']:.2f} | entropy {figures['entropy_per_trial']:.3f} | "
        f"{figures['steps_per_s']:,.0f} steps/s"
        + (f" | noise scale {noise_scale_text(noise)}" if noise else "")
        + (f" | skipped {skipped}" if skipped else "")
    )


def noise_scale_text(noise: dict) -> str:
    """The gradient noise scale (NoiseScale.report) in episodes, with its band of about two standard
    errors; only the band's floor where |G|^2 is not clear of zero (the batch is then far below it)."""
    middle, low, high = noise["episodes"], noise["episodes_low"], noise["episodes_high"]
    floor = low >= 1  # a floor below one episode says nothing
    if math.isfinite(middle) and math.isfinite(high):
        band = f"{_figures(low)}-{_figures(high)}" if floor else f"up to {_figures(high)}"
        return f"{_figures(middle)} episodes ({band})"
    if floor:
        return f"at least {_figures(low)} episodes"
    return "unresolved"


def _figures(episodes: float) -> str:
    """Two significant figures from 100 up: the estimate is not good to three."""
    return f"{float(f'{episodes:.2g}') if episodes >= 100 else episodes:,.0f}"


def _histogram(writer, tag: str, values, step: int) -> None:
    """One histogram of the finite values, in float64; none where numpy cannot bin them (weights an
    absurd learning rate blew up to one huge number): the histograms are a view of the run."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size:
        try:
            writer.add_histogram(tag, values, step)
        except ValueError:
            pass


def scalar_groups(
    figures, snap, phases, result, tr, schedule, strategy, skipped, regret: bool, noise: dict | None = None
) -> dict:
    """TensorBoard scalars by group; see docs/watching.md, "TensorBoard". `schedule`: this update's scheduled
    values (lr, beta_e, gamma, batch_episodes); `noise`: the gradient noise scale's figures
    (NoiseScale.report)."""
    norm = result.grad_norm
    clipped = min(norm, tr.max_grad_norm) if tr.max_grad_norm > 0 else norm
    charts = {
        "episode_return": figures["return"],
        "entropy_per_trial": figures["entropy_per_trial"],
        **schedule,
    }
    if snap:
        charts.update(
            episode_return_ema=snap["ema_return"],
            best_return=snap["best_return"],
            episodes_total=snap["episodes_total"],
        )
    if regret:  # the task's yardstick (TaskUnit.regret_chart: bandits); on the others, return
        charts["regret"] = figures["regret"]
    ms = {name: 1e3 * s for name, s in phases.items()}
    perf = {f"{name}_ms": v for name, v in ms.items() if name != "step"}
    if "step" in ms:
        perf["optimizer_ms"] = ms["step"] - ms.get("sync", 0.0)
    perf["steps_per_s"] = figures["steps_per_s"]
    return {
        "charts": charts,
        "losses": {
            "policy": figures["policy_loss"],
            "value": figures["value_loss"],
            "entropy": figures["entropy"],
            "total": figures["total_loss"],
            "grad_norm": norm,
            "grad_norm_clipped": clipped,
        },
        # No sync figure where no collective was timed (DDP's run inside backward; local_sgd
        # between averages): a NaN scalar only draws a gap and a warning.
        "comm": {"skipped_updates": skipped}
        | ({f"{strategy}_sync_ms": ms["sync"]} if "sync" in ms else {})
        | ({f"{strategy}_wait_ms": ms["sync_wait"]} if "sync_wait" in ms else {}),
        "perf": perf,
    } | ({"noise": _noise_scalars(noise)} if noise else {})


def _noise_scalars(noise: dict) -> dict:
    scalars = {"grad_sq": noise["grad_sq"], "trace": noise["trace"]}
    for tag, key in (
        ("scale_episodes", "episodes"),
        ("scale_low", "episodes_low"),
        ("scale_high", "episodes_high"),
    ):
        if math.isfinite(noise[key]):  # a NaN or infinite scalar only draws a gap and a warning
            scalars[tag] = noise[key]
    return scalars
