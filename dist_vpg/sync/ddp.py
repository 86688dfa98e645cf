"""torch's DistributedDataParallel and its communication hooks: the references the hand-written
strategies are measured against. DDP reduces gradient buckets from hooks during backward, so its
time is not separable from backward's (`sync_s` is NaN)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

from dist_vpg.settings import require
from dist_vpg.sync.base import StepResult, Strategy, clip_and_step

if TYPE_CHECKING:
    from dist_vpg.config import Config, SyncConfig


class DDP(Strategy):
    """DDP with torch's allreduce hook: every bucket all-reduced (and averaged) in float32. Only a
    forward through the wrapper arms the hooks: a forward through `.module` would skip the
    reduction without a word. The hook is wrapped to note each bucket's squared norm before it is
    reduced: the rank's own gradient, which the noise scale needs and .grad never holds."""

    name = "ddp"
    reduces_in_backward = True
    hook = staticmethod(default_hooks.allreduce_hook)

    @classmethod
    def refuse(cls, cfg: Config, world_size: int | None = None) -> None:
        require(
            cfg.train.rollout != "onepass",
            "sync.strategy",
            f"{cfg.sync.strategy} needs train.rollout=native or twopass: DDP reduces once per forward, "
            "onepass steps many",
        )

    def __init__(self, agent: nn.Module, settings: SyncConfig):
        super().__init__(agent, settings)
        self.ddp = DistributedDataParallel(agent)
        self._local_sq = 0.0
        self.register_hook()

    def register_hook(self) -> None:
        def measured(strategy, bucket):  # no annotations: DDP checks them, and ours would be strings
            strategy._local_sq += float(bucket.buffer().square().sum())
            return strategy.hook(None, bucket)

        self.ddp.register_comm_hook(self, measured)

    def local_sq_norm(self) -> float | None:
        local, self._local_sq = self._local_sq, 0.0
        return local

    def wrap(self) -> nn.Module:
        return self.ddp

    def no_sync(self):
        return self.ddp.no_sync()

    def reduce(self) -> None:
        pass  # done by DDP's hooks inside backward

    def step(self, optimizer: torch.optim.Optimizer, max_norm: float) -> StepResult:
        applied, norm = clip_and_step(self.params, optimizer, max_norm)
        return StepResult(applied, norm, float("nan"))


class DDPFP16(DDP):
    """DDP whose buckets travel as float16 (torch's fp16_compress_hook): each rank divides by the
    world size, rounds to float16, the all_reduce sums in float16 and every rank casts back. About
    3 significant digits; a sum beyond float16's range is Inf and skips the step."""

    name = "ddp_fp16"
    hook = staticmethod(default_hooks.fp16_compress_hook)


def bf16_hook(process_group, bucket):  # no annotations: DDP checks them, and ours would be strings
    """The bfloat16 twin of torch's fp16_compress_hook, for gloo: torch's own bf16_compress_hook is
    refused by DDP unless the backend is NCCL 2.10+ (or XCCL), though gloo sums bfloat16 fine."""
    group = process_group if process_group is not None else dist.group.WORLD
    buffer = bucket.buffer()
    compressed = buffer.to(torch.bfloat16).div_(group.size())

    def decompress(fut):
        return buffer.copy_(fut.value()[0])  # in place: no second float32 bucket

    return dist.all_reduce(compressed, group=group, async_op=True).get_future().then(decompress)


class DDPBF16(DDPFP16):
    """As ddp_fp16 with bfloat16: float32's range (no overflow) but only 8 bits of mantissa, about
    2-3 significant digits."""

    name = "ddp_bf16"
    hook = staticmethod(bf16_hook)


class DDPPowerSGD(DDP):
    """torch's PowerSGD hook: each gradient matrix M (n x m) travels as two low-rank factors, P = M Q
    (n x r) and Q = M^T P (m x r), each all-reduced, with one orthogonalization between; vectors and
    matrices too small to gain travel whole. What the approximation leaves out is kept per rank
    (error feedback) and added to the next update's gradient, so nothing is lost for good, only
    late. Every rank decompresses the same all-reduced factors, so the ranks stay bitwise alike.

    `sync.powersgd_rank` is r; the first `sync.powersgd_start` updates run plain all_reduce (torch
    requires two with error feedback). The per-rank residuals are not checkpointed:
    a resumed run starts them at zero and runs the plain updates again."""

    name = "ddp_powersgd"
    noise_scale_unavailable = "ddp_powersgd compresses the gradient: the reduced one is not the ranks' mean"

    def __init__(self, agent: nn.Module, settings: SyncConfig, min_compression_rate: float = 2.0):
        self.min_compression_rate = min_compression_rate
        super().__init__(agent, settings)

    def register_hook(self) -> None:
        settings = self.settings
        self.state = powerSGD_hook.PowerSGDState(
            process_group=None,
            matrix_approximation_rank=settings.powersgd_rank,
            start_powerSGD_iter=settings.powersgd_start,
            min_compression_rate=self.min_compression_rate,
            # Keeps a rank-deficient matrix (the gradient of a 2-action policy's weight has two
            # opposite rows) from dividing by zero in the orthogonalization.
            orthogonalization_epsilon=1e-8,
            use_error_feedback=True,
            warm_start=True,
            random_seed=0,
        )
        self.ddp.register_comm_hook(self.state, powerSGD_hook.powerSGD_hook)
