"""How one update's gradients meet across ranks (gloo, CPU): one class per strategy, one table.

Every strategy leaves the ranks holding bitwise-identical parameters after `step`. The loss each
rank back-propagates is the mean over its own episodes; the ranks' shares are equal, so the mean of
the ranks' gradients is the gradient of the global mean. gloo has no AVG: sum, then divide.
Clipping and the finiteness check act on the reduced gradient, so they decide alike on every rank.
The sync code knows nothing of tasks or rollouts.
"""

from __future__ import annotations

import contextlib
import math
import time
import zlib
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class StepResult(NamedTuple):
    applied: bool  # False when the reduced gradient held a NaN or Inf and the step was skipped
    grad_norm: float  # global norm of the reduced gradient, before clipping
    sync_s: float  # seconds spent in this update's collectives (NaN where DDP hides them in backward)


class DivergedError(RuntimeError):
    """The ranks no longer hold the same parameters or optimizer state."""


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
    """Clip the (already reduced) gradient by global norm and step, unless it is not finite."""
    norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf")))
    finite = math.isfinite(norm)
    if finite:
        optimizer.step()
    return finite, norm


class Strategy:
    """Base: all ranks reduce, every rank steps its own optimizer."""

    name = ""
    owns_optimizer_everywhere = True  # every rank keeps optimizer state (compared by the checksum)

    def __init__(self, agent: nn.Module):
        self.agent = agent
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

    def step(self, optimizer: torch.optim.Optimizer, max_norm: float) -> StepResult:
        start = time.perf_counter()
        self.reduce()
        sync_s = time.perf_counter() - start
        applied, norm = clip_and_step(self.params, optimizer, max_norm)
        return StepResult(applied, norm, sync_s)


class AllReduce(Strategy):
    """All gradients in one flat buffer, one all_reduce per update: one latency, not one per tensor."""

    name = "allreduce"

    def reduce(self) -> None:
        flat = _flat_grads(self.params)
        dist.all_reduce(flat)
        flat /= self.world_size
        _unflatten_into(flat, [p.grad for p in self.params])


class AllReducePerParam(Strategy):
    """One all_reduce per parameter tensor: pays the collective's latency once per tensor."""

    name = "allreduce_per_param"

    def reduce(self) -> None:
        for p in self.params:
            dist.all_reduce(p.grad)
            p.grad /= self.world_size


class AllReduceFP16(Strategy):
    """Half the bytes on the wire: each rank's flat gradient is sent as float16, and every rank sums
    the gathered halves in float32, in rank order, so all ranks get the same bits. Precision drops
    to float16's (about 3 decimal digits); a gradient beyond float16's range becomes Inf and the
    step is skipped."""

    name = "allreduce_fp16"

    def reduce(self) -> None:
        flat = _flat_grads(self.params)
        half = (flat / self.world_size).half()
        gathered = [torch.empty_like(half) for _ in range(self.world_size)]
        dist.all_gather(gathered, half)
        total = torch.zeros_like(flat)
        for part in gathered:
            total += part.float()
        _unflatten_into(total, [p.grad for p in self.params])


class ReduceBroadcast(Strategy):
    """Gradients summed onto rank 0, which alone steps the optimizer and then broadcasts the new
    weights. Optimizer state lives on rank 0 only; so do checkpoints."""

    name = "reduce_broadcast"
    owns_optimizer_everywhere = False

    def step(self, optimizer: torch.optim.Optimizer, max_norm: float) -> StepResult:
        start = time.perf_counter()
        flat = _flat_grads(self.params)
        dist.reduce(flat, dst=0)
        sync_s = time.perf_counter() - start
        # The weights travel with two more floats, rank 0's verdict and norm, so every rank
        # knows whether the step was skipped.
        payload = torch.empty(sum(p.numel() for p in self.params) + 2)
        if dist.get_rank() == 0:
            _unflatten_into(flat / self.world_size, [p.grad for p in self.params])
            applied, norm = clip_and_step(self.params, optimizer, max_norm)
            payload[:-2] = torch.cat([p.detach().reshape(-1) for p in self.params])
            payload[-2:] = torch.tensor([float(applied), norm])
        start = time.perf_counter()
        dist.broadcast(payload, src=0)
        sync_s += time.perf_counter() - start
        with torch.no_grad():
            _unflatten_into(payload[:-2], self.params)
        return StepResult(bool(payload[-2].item()), float(payload[-1].item()), sync_s)


class DDP(Strategy):
    """torch's DistributedDataParallel, the reference: it all-reduces (and averages) the gradient
    buckets from hooks during backward. Only a forward through the wrapper arms those hooks: a
    forward through `.module` would skip the reduction without a word."""

    name = "ddp"

    def __init__(self, agent: nn.Module):
        super().__init__(agent)
        self.ddp = DistributedDataParallel(agent)

    def wrap(self) -> nn.Module:
        return self.ddp

    def no_sync(self):
        return self.ddp.no_sync()

    def reduce(self) -> None:
        pass  # done by DDP's hooks inside backward

    def step(self, optimizer: torch.optim.Optimizer, max_norm: float) -> StepResult:
        applied, norm = clip_and_step(self.params, optimizer, max_norm)
        return StepResult(applied, norm, float("nan"))


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (AllReduce, AllReducePerParam, ReduceBroadcast, DDP, AllReduceFP16)
}


def make_strategy(name: str, agent: nn.Module) -> Strategy:
    return STRATEGIES[name](agent)


def broadcast_initial(agent: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Rank 0's parameters (and optimizer state, when given) on every rank: the ranks need not
    have been seeded alike."""
    with torch.no_grad():
        for p in agent.parameters():
            dist.broadcast(p.data, src=0)
    if optimizer is not None:
        box = [optimizer.state_dict() if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(box, src=0)
        if dist.get_rank() != 0:
            optimizer.load_state_dict(box[0])


def checksum(agent: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """CRC32 of the exact bytes of the parameters and, when given, the optimizer state tensors."""
    crc = 0
    tensors = [p.detach() for p in agent.parameters()]
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors += [v for _, v in sorted(state.items()) if torch.is_tensor(v)]
    for t in tensors:
        crc = zlib.crc32(t.contiguous().numpy().tobytes(), crc)
    return crc


def check_in_sync(agent: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Compare every rank's checksum with rank 0's; raise DivergedError on every rank if any differ."""
    mine = torch.tensor([checksum(agent, optimizer)], dtype=torch.int64)
    sums = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(sums, mine)
    diverged = [rank for rank, s in enumerate(sums) if s.item() != sums[0].item()]
    if diverged:
        names = ", ".join(map(str, diverged))
        raise DivergedError(
            f"rank{'s' if len(diverged) > 1 else ''} {names} diverged from rank 0: "
            "parameters or optimizer state differ"
        )
