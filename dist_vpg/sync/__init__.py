"""How one update's gradients meet across ranks (gloo, CPU): one class per strategy, one table.

Every strategy leaves the ranks holding bitwise-identical parameters after `step` (local_sgd: after
`agree`). The loss each rank back-propagates is the mean over its own episodes; the ranks' shares
are equal, so the mean of the ranks' gradients is the gradient of the global mean. gloo has no AVG:
sum, then divide. Clipping and the finiteness check act on the reduced gradient, so they decide
alike on every rank. The sync code knows nothing of tasks or rollouts.

    base          StepResult, the NaN guard, the all-zero gradient trap, the Strategy base class
    flat          allreduce, allreduce_per_param, allreduce_fp16, reduce_broadcast
    hierarchical  within each node, then among nodes
    ddp           torch's DDP and its fp16, bf16 and PowerSGD communication hooks
    local_sgd     periodic weight averaging
    checks        the initial broadcast and the divergence check
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from dist_vpg.sync.base import NonFiniteError, SkipGuard, StepResult, Strategy, ZeroGradTrap, clip_and_step
from dist_vpg.sync.checks import DivergedError, broadcast_initial, check_in_sync, checksum
from dist_vpg.sync.ddp import DDP, DDPBF16, DDPFP16, DDPPowerSGD
from dist_vpg.sync.flat import AllReduce, AllReduceFP16, AllReducePerParam, ReduceBroadcast
from dist_vpg.sync.hierarchical import Hierarchical, node_layout
from dist_vpg.sync.local_sgd import LocalSGD

if TYPE_CHECKING:
    from dist_vpg.config import SyncConfig

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        AllReduce,
        AllReducePerParam,
        ReduceBroadcast,
        DDP,
        AllReduceFP16,
        Hierarchical,
        DDPFP16,
        DDPBF16,
        DDPPowerSGD,
        LocalSGD,
    )
}


def make_strategy(name: str, agent: nn.Module, settings: SyncConfig) -> Strategy:
    return STRATEGIES[name](agent, settings)


__all__ = [
    "STRATEGIES",
    "DivergedError",
    "NonFiniteError",
    "SkipGuard",
    "StepResult",
    "Strategy",
    "ZeroGradTrap",
    "broadcast_initial",
    "check_in_sync",
    "checksum",
    "clip_and_step",
    "make_strategy",
    "node_layout",
]
