"""How many episodes each update plays on this world, and the learning rate's factor for it.

Strong scaling (the default): `train.batch_episodes` is the whole world's rollout round, and more
ranks split the same episodes. Weak scaling (`train.weak_scaling`): it is each rank's, and the
global batch grows with the ranks; `train.lr_scaling` then multiplies the learning rate by
(global round / batch_episodes) ** p, p = 0 (none), 1/2 (sqrt) or 1 (linear). A batch schedule
(`sync.accumulate_final`) raises the accumulation rounds linearly over training, from
`sync.accumulate` at the first update to `sync.accumulate_final` at the last: later updates see
more episodes at the same learning rate, the alternative to decaying it (Smith et al. 2017, "Don't
decay the learning rate, increase the batch size"). Every figure here depends on the update's index
and the configuration alone, so resumed runs and any split over ranks play the same episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from dist_vpg.config import Config

LR_POWERS = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


@dataclass(frozen=True)
class BatchPlan:
    share: int  # episodes per rank per rollout round
    world_size: int
    rounds_first: int  # accumulation rounds at the first update
    rounds_final: int  # and at the last
    updates: int
    lr_factor: float  # what the learning rate's schedule is multiplied by

    @property
    def round_episodes(self) -> int:
        """One rollout round of every rank together."""
        return self.share * self.world_size

    def rounds(self, update: int) -> int:
        """Accumulation rounds of update `update` (0-based): linear from first to final, rounded."""
        if self.rounds_final == self.rounds_first or self.updates <= 1:
            return self.rounds_first
        return round(
            self.rounds_first + update / (self.updates - 1) * (self.rounds_final - self.rounds_first)
        )

    def episodes(self, update: int) -> int:
        return self.round_episodes * self.rounds(update)

    def episodes_before(self, update: int) -> int:
        """Episodes played by the updates before `update` (the first `update` updates)."""
        if self.rounds_final == self.rounds_first:
            return update * self.episodes(0)
        return int(sum(self.episodes(u) for u in range(update)))

    def describe(self) -> str:
        """`256 episodes (2 ranks x 128)`, `256 to 768 episodes (2 ranks x 128 x 1 to 3 rounds)`."""
        first, final = self.rounds_first, self.rounds_final
        episodes = f"{self.round_episodes * first}" + (
            f" to {self.round_episodes * final}" if final != first else ""
        )
        rounds = (
            ""
            if final == first == 1
            else f" x {first}" + (f" to {final}" if final != first else "") + " rounds"
        )
        return f"{episodes} episodes ({self.world_size} ranks x {self.share}{rounds})"


def plan(cfg: Config, world_size: int) -> BatchPlan:
    tr, s = cfg.train, cfg.sync
    if tr.weak_scaling:
        share = tr.batch_episodes
        factor = float(np.float64(world_size) ** LR_POWERS[tr.lr_scaling])
    else:
        share, factor = tr.batch_episodes // world_size, 1.0
    final = s.accumulate_final or s.accumulate
    return BatchPlan(share, world_size, s.accumulate, final, tr.updates, factor)
