"""Reduce within each node first, then once among the nodes, then hand the sum back within each
node: the inter-node links carry one gradient per node instead of one per rank."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import torch.distributed as dist
from torch import nn

from dist_vpg.settings import require
from dist_vpg.sync.base import Strategy, _flat_grads, _unflatten_into

if TYPE_CHECKING:
    from dist_vpg.config import Config, SyncConfig


def node_layout(node_size: int) -> list[list[int]]:
    """The ranks of each node, in rank order. node_size > 0 cuts the ranks into consecutive blocks
    of that size (emulating nodes on one machine); 0 takes torchrun's layout, its GROUP_RANK (the
    node's index), or the host name outside torchrun. A collective: every rank must call it."""
    world = dist.get_world_size()
    if node_size > 0:
        return [list(range(first, min(first + node_size, world))) for first in range(0, world, node_size)]
    keys: list = [None] * world
    dist.all_gather_object(keys, os.environ.get("GROUP_RANK") or socket.gethostname())
    nodes: dict[str, list[int]] = {}
    for rank, key in enumerate(keys):
        nodes.setdefault(key, []).append(rank)
    return list(nodes.values())


class Hierarchical(Strategy):
    """Three steps on one flat buffer: reduce to the node's leader (its lowest rank), all_reduce
    among the leaders, broadcast from the leader within the node. Sums in another order than a
    flat all_reduce (within float32 rounding of it); every rank ends with the leader's bits.
    `sync.node_size` sets the layout (0: torchrun's)."""

    name = "hierarchical"

    @classmethod
    def refuse(cls, cfg: Config, world_size: int | None = None) -> None:
        node_size = cfg.sync.node_size
        if world_size is None or node_size == 0:
            return
        require(
            node_size <= world_size,
            "sync.node_size",
            f"{node_size} ranks per node, but the job has {world_size}: every rank would be one node "
            "(0 takes torchrun's layout)",
        )
        divisors = [d for d in range(1, world_size + 1) if world_size % d == 0]
        require(
            world_size % node_size == 0,
            "sync.node_size",
            f"{node_size} ranks per node does not divide the job's {world_size} ranks: the last node "
            f"would have {world_size % node_size}; take one of {', '.join(map(str, divisors))} "
            "(0 takes torchrun's layout)",
        )

    def __init__(self, agent: nn.Module, settings: SyncConfig):
        super().__init__(agent, settings)
        self.nodes = node_layout(settings.node_size)
        rank = dist.get_rank()
        # new_group is a collective over the whole world: every rank creates every group, in order.
        groups = [dist.new_group(ranks) for ranks in self.nodes]
        self.leaders = dist.new_group([ranks[0] for ranks in self.nodes])
        mine = next(i for i, ranks in enumerate(self.nodes) if rank in ranks)
        self.node, self.leader = groups[mine], self.nodes[mine][0]
        self.node_ranks = len(self.nodes[mine])
        self.is_leader = rank == self.leader

    def reduce(self) -> None:
        flat = _flat_grads(self.params)
        if self.node_ranks > 1:
            dist.reduce(flat, dst=self.leader, group=self.node)
        if self.is_leader and len(self.nodes) > 1:
            dist.all_reduce(flat, group=self.leaders)
        if self.node_ranks > 1:
            dist.broadcast(flat, src=self.leader, group=self.node)
        flat /= self.world_size
        _unflatten_into(flat, [p.grad for p in self.params])
