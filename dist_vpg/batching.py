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

The schedule can follow the measured noise scale instead (`sync.follow_noise`, FollowNoise): the
rounds grow, never shrink, to keep each update's batch at least that fraction of the noise scale's
lower band, up to `sync.accumulate_final`. It measures the noise scale from the two halves of each
update's episodes (gradient_noise.Halves), the same on every rank and every world size (to the
reduce's rounding), and checkpoints keep its state, so it too plays the same episodes on N ranks as
on one, and resumed as uninterrupted. On an odd world size each round is then played as two
rollouts of half the share, so that no rollout straddles the halves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dist_vpg.gradient_noise import Halves

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
    follow: FollowNoise | None = field(default=None, compare=False)  # rounds that follow the noise scale
    split: int = 1  # rollouts each round is played as on a rank (2: following the noise, odd world)

    @property
    def rollout_share(self) -> int:
        """Episodes of one rollout on one rank."""
        return self.share // self.split

    def rollouts(self, update: int) -> int:
        """Rollouts (backward calls) of update `update` on each rank."""
        return self.rounds(update) * self.split

    @property
    def round_episodes(self) -> int:
        """One rollout round of every rank together."""
        return self.share * self.world_size

    def rounds(self, update: int) -> int:
        """Accumulation rounds of update `update` (0-based): linear from first to final, rounded; or
        as the noise-following schedule has set them (for updates it has reached)."""
        if self.follow is not None:
            return self.follow.rounds(update)
        if self.rounds_final == self.rounds_first or self.updates <= 1:
            return self.rounds_first
        return round(
            self.rounds_first + update / (self.updates - 1) * (self.rounds_final - self.rounds_first)
        )

    def episodes(self, update: int) -> int:
        return self.round_episodes * self.rounds(update)

    def episodes_before(self, update: int) -> int:
        """Episodes played by the updates before `update` (the first `update` updates)."""
        if self.follow is not None:
            return self.round_episodes * self.follow.rounds_before(update)
        if self.rounds_final == self.rounds_first:
            return update * self.episodes(0)
        return int(sum(self.episodes(u) for u in range(update)))

    def summary(self) -> dict:
        """summary.json's account of the batch: the episodes of the first and last updates, and where
        the schedule follows the noise scale, each growth and the estimate it followed."""
        described = {"first_episodes": self.episodes(0), "last_episodes": self.episodes(self.updates - 1)}
        if self.follow is None:
            return described
        figures = self.follow.estimate.averages.figures() or {}
        return described | {
            "follow_noise": self.follow.fraction,
            "growths": [
                {"update": start + 1, "episodes": rounds * self.round_episodes}
                for start, rounds in self.follow.changes[1:]
            ],
            "noise_scale": {key: value if math.isfinite(value) else None for key, value in figures.items()},
        }

    def describe(self) -> str:
        """`256 episodes (2 ranks x 128)`, `256 to 768 episodes (2 ranks x 128 x 1 to 3 rounds)`."""
        first, final = self.rounds_first, self.rounds_final
        episodes = f"{self.round_episodes * first}" + (
            f" to {self.round_episodes * final}" if final != first else ""
        )
        following = ""
        if self.follow is not None:
            following = f", following {self.follow.fraction:g} x the noise scale"
        rounds = (
            ""
            if final == first == 1
            else f" x {first}" + (f" to {final}" if final != first else "") + " rounds"
        )
        split = f", each as {self.split} rollouts" if self.split > 1 else ""
        ranks = f"{self.world_size} rank{'s' if self.world_size > 1 else ''}"
        return f"{episodes} episodes ({ranks} x {self.share}{rounds}{split}{following})"


def plan(cfg: Config, world_size: int, rank: int = 0) -> BatchPlan:
    tr, s = cfg.train, cfg.sync
    if tr.weak_scaling:
        share = tr.batch_episodes
        factor = float(np.float64(world_size) ** LR_POWERS[tr.lr_scaling])
    else:
        share, factor = tr.batch_episodes // world_size, 1.0
    final = s.accumulate_final or s.accumulate
    follow = None
    if s.follow_noise:
        estimate = Halves(cfg.log.noise_scale_decay, rank, world_size)
        follow = FollowNoise(s.follow_noise, s.accumulate, final, tr.updates, estimate)
    split = 2 if follow is not None and world_size % 2 else 1
    return BatchPlan(share, world_size, s.accumulate, final, tr.updates, factor, follow, split)


class FollowNoise:
    """The accumulation rounds of a schedule that follows the noise scale. After each update the
    rounds become the fewest that make a batch at least `fraction` times the lower edge of the noise
    scale's band, if that is more than they are, at most `final`. The lower edge is small while the
    estimate is unsure (early on, or while |G|^2 is lost in noise), so the batch grows when the
    measurement says it should and not on one noisy update; nor before the averages have taken in
    a window of updates (1 / (1 - decay)). Every rank decides alike, on any world size: the
    estimate is the same there (gradient_noise.Halves)."""

    def __init__(self, fraction: float, first: int, final: int, updates: int, estimate: Halves):
        self.fraction, self.final, self.updates = fraction, final, updates
        self.estimate = estimate
        self.window = round(1 / (1 - estimate.averages.decay))
        self.changes: list[tuple[int, int]] = [(0, first)]  # (first update, rounds), in order

    def rounds(self, update: int) -> int:
        return next(rounds for start, rounds in reversed(self.changes) if start <= update)

    def rounds_before(self, update: int) -> int:
        """The rounds played by the first `update` updates (the ones decided so far)."""
        bounds = [start for start, _ in self.changes[1:]] + [math.inf]
        return sum(
            rounds * max(0, min(end, update) - start) for (start, rounds), end in zip(self.changes, bounds)
        )

    def after_step(self, update: int, grad_norm: float, round_episodes: int) -> int | None:
        """Measure update `update` (its reduced gradient's norm before clipping; a collective on
        more than one rank); returns the new rounds from update + 1 on where they grow, else None."""
        current = self.rounds(update)
        self.estimate.after_step(grad_norm, round_episodes * current)
        figures = self.estimate.averages.figures()
        if figures is None or current >= self.final or update + 1 >= self.updates:
            return None
        if self.estimate.averages.updates < self.window:
            return None
        low = figures["episodes_low"]  # inf or NaN where |G|^2 is not above zero: nothing to follow
        if not math.isfinite(low):
            return None
        wanted = math.ceil(self.fraction * low / round_episodes)
        if wanted <= current:
            return None
        grown = min(wanted, self.final)
        self.changes.append((update + 1, grown))
        return grown

    def state_dict(self) -> dict:
        return {"changes": [list(c) for c in self.changes], "estimate": self.estimate.state_dict()}

    def load_state_dict(self, state: dict, update: int) -> None:
        """The state a checkpoint of update `update` kept (decisions after it are dropped)."""
        self.changes = [(int(start), int(rounds)) for start, rounds in state["changes"] if start <= update]
        self.estimate.load_state_dict(state["estimate"])
