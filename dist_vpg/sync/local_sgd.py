"""Local SGD (periodic model averaging): every rank steps on its own gradient and the ranks average
their weights every `sync.period` updates, so a slow link is crossed once per period instead of
once per update."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from dist_vpg.sync.base import StepResult, Strategy, _unflatten_into, clip_and_step

if TYPE_CHECKING:
    from dist_vpg.config import SyncConfig


class LocalSGD(Strategy):
    """Between averages the ranks' weights part; `agree` averages early wherever the job reads the
    weights as one (check, evaluation, checkpoint, end). Each rank keeps its own optimizer state
    (not averaged, not compared; a checkpoint holds rank 0's). Clipping and the finiteness check
    act on each rank's own gradient: a rank with a non-finite gradient skips its local step, and
    the ranks learn of it at the next periodic average, whose payload carries the count; so
    `applied` is False for a period in which any rank skipped, and `sync.max_skipped` counts such
    periods in a row. With period 1 and plain SGD this is allreduce exactly (averaging the weights
    after a step is stepping with the averaged gradient); with RMSprop or Adam it is not."""

    name = "local_sgd"
    owns_optimizer_everywhere = False
    noise_scale_unavailable = "local_sgd averages weights, not gradients: no reduced gradient to compare"

    def __init__(self, agent: nn.Module, settings: SyncConfig):
        super().__init__(agent, settings)
        self.period = settings.period
        self.since = 0  # local steps since the last average
        self.skipped = 0  # local steps skipped since the last periodic average

    def reduce(self) -> None:
        raise NotImplementedError("local_sgd averages weights in step, not gradients")

    def step(self, optimizer: torch.optim.Optimizer, max_norm: float) -> StepResult:
        applied, norm = clip_and_step(self.params, optimizer, max_norm)
        self.since += 1
        self.skipped += not applied
        if self.since < self.period:
            return StepResult(True, norm, float("nan"))  # no collective: nothing to time
        start = time.perf_counter()
        skipped = self.average(self.skipped)
        self.skipped = 0
        return StepResult(skipped == 0, norm, time.perf_counter() - start)

    def agree(self) -> None:
        if self.since:
            self.average(0)  # the skip count waits for the periodic average

    def average(self, skipped: int) -> int:
        """All ranks' mean weights on every rank (one all_reduce); returns the summed skip count."""
        payload = torch.cat([p.detach().reshape(-1) for p in self.params] + [torch.tensor([float(skipped)])])
        dist.all_reduce(payload)
        with torch.no_grad():
            _unflatten_into(payload[:-1] / self.world_size, self.params)
        self.since = 0
        return round(payload[-1].item())
