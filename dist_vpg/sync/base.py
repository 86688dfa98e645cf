"""What every strategy shares: the step's result, the NaN guard, flat buffers, clip-and-step, the
base class."""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from dist_vpg.config import Config, SyncConfig


class StepResult(NamedTuple):
    applied: bool  # False when the reduced gradient held a NaN or Inf and the step was skipped
    grad_norm: float  # global norm of the reduced gradient, before clipping
    sync_s: float  # seconds spent in this update's collectives (NaN where DDP hides them in backward)


class SkipGuard:
    """Counts skipped (non-finite) updates; too many in a row stop the run. Every rank sees the same
    verdicts, so every rank stops at the same update."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_row = 0
        self.total = 0

    def record(self, applied: bool) -> None:
        self.in_row = 0 if applied else self.in_row + 1
        self.total += not applied
        if self.in_row > self.limit:
            raise NonFiniteError(
                f"{self.in_row} updates in a row had a NaN or Inf gradient "
                f"(sync.max_skipped={self.limit}); stopping"
            )


class NonFiniteError(RuntimeError):
    """The reduced gradient stayed NaN or Inf for longer than sync.max_skipped updates."""


def _flat_grads(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in params])


def _unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def clip_and_step(
    params: list[torch.Tensor], optimizer: torch.optim.Optimizer, max_norm: float
) -> tuple[bool, float]:
    """Clip the (already reduced) gradient by global norm and step, unless it is not finite. An
    optimizer with its own `clip_and_step` (dist_vpg.native.RMSprop) does both in one pass."""
    max_norm = max_norm if max_norm > 0 else float("inf")
    fused = getattr(optimizer, "clip_and_step", None)
    norm = fused(params, max_norm) if fused else None
    if norm is not None:
        return math.isfinite(norm), norm
    norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    finite = math.isfinite(norm)
    if finite:
        optimizer.step()
    return finite, norm


class Strategy:
    """Base: all ranks reduce, every rank steps its own optimizer."""

    name = ""
    owns_optimizer_everywhere = True  # every rank keeps optimizer state (compared by the checksum)
    # Why the gradient noise scale (dist_vpg.gradient_noise) cannot be measured under this strategy,
    # "" where it can: the reduced gradient must be the mean of the ranks' own, and each rank's own
    # must be seen before the reduce (in .grad after backward, or by `local_sq_norm`).
    noise_scale_unavailable = ""
    reduces_in_backward = False  # DDP: .grad holds the reduced gradient as soon as backward ends

    @classmethod
    def refuse(cls, cfg: Config, world_size: int | None = None) -> None:
        """Raise ConfigError for settings this strategy cannot run with: the config's own, and with
        `world_size` the job's (config.check and config.check_world ask every strategy here)."""

    def __init__(self, agent: nn.Module, settings: SyncConfig):
        self.agent = agent
        self.settings = settings
        self.params = [p for p in agent.parameters() if p.requires_grad]
        self.world_size = dist.get_world_size()

    def wrap(self) -> nn.Module:
        """The module the gradient-carrying forward goes through."""
        return self.agent

    def no_sync(self):
        """Context for backward calls that only accumulate (all but the last of sync.accumulate)."""
        return contextlib.nullcontext()

    def reduce(self) -> None:
        """Turn each rank's .grad into the mean over ranks."""
        raise NotImplementedError

    def local_sq_norm(self) -> float | None:
        """This rank's own gradient's squared norm over the whole update, where the reduce runs
        inside backward (DDP) and .grad never holds it; None where .grad does."""
        return None

    def agree(self) -> None:
        """Make the ranks' parameters equal where a strategy lets them part between steps (local
        SGD); called before anything reads the weights as the job's: the divergence check,
        evaluation, checkpoints, the end. A collective where it does anything."""

    def step(self, optimizer: torch.optim.Optimizer, max_norm: float) -> StepResult:
        start = time.perf_counter()
        self.reduce()
        sync_s = time.perf_counter() - start
        applied, norm = clip_and_step(self.params, optimizer, max_norm)
        return StepResult(applied, norm, sync_s)


class ZeroGradTrap:
    """Warns, once per parameter, when a parameter's whole gradient is zero: a sign of a broken graph
    (a forward that bypassed a module, a detached input) rather than of small gradients."""

    def __init__(self, say):
        self.say = say
        self.warned: set[str] = set()

    def check(self, agent: torch.nn.Module, update: int) -> list[str]:
        zero = [n for n, p in agent.named_parameters() if p.grad is not None and not p.grad.any()]
        for name in zero:
            if name not in self.warned:
                self.warned.add(name)
                self.say(f"dist_vpg: warning: the gradient of {name} is all zeros (update {update})")
        return zero
