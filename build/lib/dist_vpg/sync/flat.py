"""Strategies that reduce the gradient after backward with plain collectives: one flat all_reduce,
one per tensor, float16 on the wire, and reduce-to-rank-0-then-broadcast."""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from dist_vpg.sync.base import StepResult, Strategy, _flat_grads, _unflatten_into, clip_and_step


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
