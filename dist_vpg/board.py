"""What rank 0 shows: TensorBoard event files, and a progress bar or plain log lines.

Tag groups: charts/ (returns, regret, entropy, schedules), losses/ (loss terms, gradient norms),
comm/ (synchronization time per strategy, skipped updates), perf/ (time per phase, steps per second).
Other ranks get a Board that does nothing, so the training loop never asks who it is.
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch import nn

from dist_vpg.config import LogConfig


class Board:
    def __init__(self, run_dir: Path, cfg: LogConfig, updates: int, enabled: bool):
        self.enabled = enabled
        self.writer = None
        self.bar = None
        if not enabled:
            return
        if cfg.tensorboard:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"))
        use_bar = cfg.progress == "bar" or (cfg.progress == "auto" and sys.stderr.isatty())
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
        if self.writer is None:
            return
        for group, values in groups.items():
            for name, value in values.items():
                self.writer.add_scalar(f"{group}/{name}", value, step)

    def histograms(self, step: int, agent: nn.Module) -> None:
        if self.writer is None:
            return
        for name, p in agent.named_parameters():
            self.writer.add_histogram(f"weights/{name}", p.detach().numpy(), step)
            if p.grad is not None:
                self.writer.add_histogram(f"grads/{name}", p.grad.numpy(), step)

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
        if self.writer is not None:
            self.writer.close()
