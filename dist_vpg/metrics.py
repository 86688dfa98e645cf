"""What the training loop measures: time per phase, and per-rank sums turned into global figures."""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

from dist_vpg import distributed
from dist_vpg.losses import LossTerms
from dist_vpg.rollout import Rollout


class Timings:
    """Seconds per phase, one sample per update (or per rollout), kept for medians."""

    def __init__(self):
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._mark: dict[str, int] = {}

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.samples[name].append(time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        if not math.isnan(seconds):
            self.samples[name].append(seconds)

    def medians(self) -> dict[str, float]:
        """Over the whole run."""
        return {name: statistics.median(v) for name, v in self.samples.items() if v}

    def window_medians(self) -> dict[str, float]:
        """Over the samples since the previous call."""
        out = {}
        for name, v in self.samples.items():
            recent = v[self._mark.get(name, 0) :]
            self._mark[name] = len(v)
            if recent:
                out[name] = statistics.median(recent)
        return out


_FIELDS = ("episodes", "return", "regret", "entropy", "policy_loss", "value_loss", "total_loss", "steps")


class Window:
    """This rank's sums since the last report; `report` all-reduces them into global means. A resumed
    run's window starts from the episodes and agent steps trained before it (`before`), so that its
    log lines and summary count the whole run; its speed counts this process's alone."""

    def __init__(self, before: tuple[int, int] = (0, 0)):
        self.start = self.first_start = time.perf_counter()
        self.before = np.array(before, dtype=float)  # (episodes, agent steps) trained before this process
        self.sums = np.zeros(len(_FIELDS))
        self.totals = np.zeros(len(_FIELDS))
        self.last: dict[str, float] = {}

    def add(self, batch: Rollout, loss: LossTerms) -> tuple[int, float]:
        """Count one rollout; returns its (episodes, summed return) for the tracker."""
        episodes = batch.rewards.shape[1]
        ret = batch.rewards.sum().item()
        self.sums += [
            episodes,
            ret,
            batch.regrets.sum().item(),
            loss.entropy.item() * episodes,
            loss.policy.item() * episodes,
            loss.value.item() * episodes,
            loss.total.item() * episodes,
            batch.rewards.numel(),
        ]
        return episodes, ret

    def report(self, trials: int) -> dict[str, float]:
        """Global figures since the previous report: means per episode, entropy per trial."""
        sums = dict(zip(_FIELDS, distributed.all_sum(self.sums.tolist())))
        now = time.perf_counter()
        self.totals += [sums[f] for f in _FIELDS]
        n = max(sums["episodes"], 1)
        self.last = {
            "return": sums["return"] / n,
            "regret": sums["regret"] / n,
            "entropy": sums["entropy"] / n,
            "entropy_per_trial": sums["entropy"] / n / trials,
            "policy_loss": sums["policy_loss"] / n,
            "value_loss": sums["value_loss"] / n,
            "total_loss": sums["total_loss"] / n,
            "steps_per_s": sums["steps"] / (now - self.start),
        }
        self.sums[:] = 0
        self.start = now
        return self.last

    def summary(self) -> dict:
        wall = time.perf_counter() - self.first_start
        totals = dict(zip(_FIELDS, self.totals))
        return {
            "episodes": int(self.before[0] + totals["episodes"]),
            "agent_steps": int(self.before[1] + totals["steps"]),
            "wall_s": wall,
            "steps_per_s": totals["steps"] / wall,
            "final": self.last,
        }
