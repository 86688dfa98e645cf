"""The ranks start alike (rank 0's weights everywhere) and are checked to stay alike."""

from __future__ import annotations

import zlib

import torch
import torch.distributed as dist
from torch import nn


class DivergedError(RuntimeError):
    """The ranks no longer hold the same parameters or optimizer state."""


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
