"""The gradient noise scale, measured while training: about how many episodes an update needs
before its gradient is more signal than noise (B_simple of McCandlish et al. 2018, "An Empirical
Model of Large-Batch Training", appendix A.1).

Every update already holds the gradient at two batch sizes: each rollout's own (one rank's share
of one accumulation round, b_small episodes) before the reduce, and the reduced one of the whole
update (b_big episodes). A batch of b episodes has E|g_b|^2 = |G|^2 + tr(S) / b, where G is the true
gradient and S the covariance of one episode's gradient: a line in 1 / b, so the two sizes give
unbiased estimates of |G|^2 and tr(S). Update by update they are very noisy (the difference of two
large numbers); their exponential averages are not, and B_simple = tr(S) / |G|^2 is the ratio of
the averages. Both estimates are linear in the squared norms, so each rank keeps its own part of
every update's estimates and the ranks meet only when a figure is reported (one all_sum of those
parts since the last report), never inside an update.

Where the reduced gradient is not the mean of the rollouts' (a compressed reduce, local SGD) or
there is only one rollout per update (one rank, no accumulation), nothing is measured and
`NoiseScale.unavailable` says why.

That figure depends on how the batch is split over ranks. `Halves` measures one that does not, from
the two halves of each update's episodes, for the batch schedule that follows it
(dist_vpg.batching.FollowNoise); it costs one all_reduce per update.
"""

from __future__ import annotations

import math
import statistics
import time

import torch

from dist_vpg import distributed


def unbiased(small_sq: float, b_small: float, big_sq: float, b_big: float) -> tuple[float, float]:
    """(|G|^2, tr(S)) from the mean squared norm of gradients of b_small episodes and the squared
    norm of (or the mean over) gradients of b_big > b_small episodes. Either may be negative on
    one sample: the estimates are unbiased, not clipped."""
    g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


class Averages:
    """Exponential averages of per-update estimates of |G|^2 and tr(S) (and of their squares, for
    their spread), and the noise scale they give."""

    FIELDS = ("updates", "weight", "grad_sq", "trace", "grad_sq_sq", "trace_sq")

    def __init__(self, decay: float):
        self.decay = decay
        self.updates = 0  # estimates taken in (finite ones)
        self.weight = 0.0  # the averages' total weight: 1 - decay ** updates
        self.grad_sq = self.trace = self.grad_sq_sq = self.trace_sq = 0.0

    def add(self, g2: float, trace: float) -> None:
        if not (math.isfinite(g2) and math.isfinite(trace)):
            return
        d = self.decay
        self.grad_sq = d * self.grad_sq + (1 - d) * g2
        self.grad_sq_sq = d * self.grad_sq_sq + (1 - d) * g2 * g2
        self.trace = d * self.trace + (1 - d) * trace
        self.trace_sq = d * self.trace_sq + (1 - d) * trace * trace
        self.weight = d * self.weight + (1 - d)
        self.updates += 1

    def figures(self) -> dict[str, float] | None:
        """episodes (B_simple, NaN while the averaged |G|^2 is not above zero), the band
        [episodes_low, episodes_high] of about two standard errors (high: inf while |G|^2 is within
        them of zero), grad_sq and trace; None before any estimate."""
        if self.updates == 0:
            return None
        d = self.decay
        g2, trace = self.grad_sq / self.weight, self.trace / self.weight
        # an exponential average of n samples of variance v varies by about v (1 - d) / (1 + d)
        # once n >> 1 / (1 - d); by v / n before
        effective = min(self.updates, (1 + d) / (1 - d)) if d > 0 else 1
        two_se = lambda mean, square: 2 * math.sqrt(max(square / self.weight - mean * mean, 0.0) / effective)
        g2_err, trace_err = two_se(g2, self.grad_sq_sq), two_se(trace, self.trace_sq)
        # The two estimates' errors run opposite ways (a high small-batch norm raises tr(S) and
        # lowers |G|^2), so the band takes the corners: it is wide rather than falsely narrow.
        ratio = lambda t, g: max(t, 0.0) / g if g > 0 else math.inf
        return {
            "episodes": trace / g2 if g2 > 0 else math.nan,
            "episodes_low": ratio(trace - trace_err, g2 + g2_err),
            "episodes_high": ratio(trace + trace_err, g2 - g2_err),
            "grad_sq": g2,
            "trace": trace,
        }

    def state_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def load_state_dict(self, state: dict[str, float]) -> None:
        for name in self.FIELDS:
            setattr(self, name, state[name])


class RolloutGradients:
    """Each rollout's own gradient, from .grad as the rollouts of one update add theirs to it."""

    def __init__(self):
        self._before: torch.Tensor | None = None

    def own(self, params: list[torch.Tensor], k: int, rollouts: int) -> torch.Tensor:
        """Rollout k of `rollouts` has just added its gradient (divided by `rollouts`) to .grad:
        that addition, flat."""
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        own = flat if k == 0 else flat - self._before
        self._before = flat if k + 1 < rollouts else None
        return own


class NoiseScale:
    """Per update: `after_backward` once per rollout, `after_step` once; `report` (a collective,
    every rank at once) returns the smoothed figures. `share` is one rollout's episodes on one
    rank; an update's gradient is the mean of `rounds * world_size` such rollouts, `rounds` being
    its accumulation rounds (which a batch schedule may change from update to update).

    Each rank keeps its own part of each update's two estimates (both are linear in the ranks'
    mean small squared norm, so the ranks' mean of the parts is the estimate) until a report pools
    them in one all_sum; the averages then advance over the pooled estimates, update by update, the
    same on every rank. They also track the spread of |G|^2's estimates, which gives the figure a
    band of about two standard errors: late in training |G|^2 is tiny beside tr(S) / b, and the
    band says how far the figure can be trusted, or, while the average of |G|^2 is within noise of
    zero, the least the noise scale can be."""

    def __init__(
        self,
        share: int,
        world_size: int,
        decay: float,
        per_rank: bool,
        most_rounds: int,
        unavailable: str = "",
    ):
        # per_rank: the reduce runs inside backward (DDP), so the smallest gradient seen is the
        # rank's own over all its rollouts, handed to after_step; otherwise each rollout's, in .grad.
        self.per_rank, self.share, self.world_size, self.decay = per_rank, share, world_size, decay
        if not unavailable and (world_size == 1 and (per_rank or most_rounds == 1)):
            unavailable = "one gradient per update, nothing smaller to compare it with" + (
                "" if per_rank else " (on one rank, sync.accumulate=2 or more measures it)"
            )
        self.unavailable = unavailable
        self.averages = Averages(decay)
        self.b_small = self.b_big = 0  # of the last update measured
        self._pending: list[float] = []  # this rank's parts since the last report: (g2, trace) pairs
        self._rounds_sq = 0.0
        self._rollouts = RolloutGradients()
        self._spent = 0.0  # seconds this update
        self.seconds: list[float] = []  # per update, for summary.json's median

    def after_backward(self, params: list[torch.Tensor], k: int, rounds: int) -> None:
        """Rollout k of this update's `rounds` has added its gradient, divided by `rounds`, to .grad."""
        if self.unavailable or self.per_rank:
            return
        start = time.perf_counter()
        rollout = self._rollouts.own(params, k, rounds)
        self._rounds_sq += float(rollout.square().sum()) * rounds**2
        self._spent += time.perf_counter() - start

    def after_step(self, grad_norm: float, rounds: int, local_sq: float | None = None) -> None:
        """`grad_norm`: the reduced gradient's norm before clipping (StepResult.grad_norm);
        `local_sq` (per_rank): the rank's own gradient's squared norm (Strategy.local_sq_norm).
        Every update leaves a pair, NaN where it measured nothing, so the ranks' lists align."""
        if self.unavailable:
            return
        start = time.perf_counter()
        small = local_sq if self.per_rank else self._rounds_sq / rounds
        b_small = self.share * rounds if self.per_rank else self.share
        b_big = self.share * rounds * self.world_size
        self._rounds_sq = 0.0
        part = (math.nan, math.nan)
        if b_big > b_small:
            part = unbiased(small, b_small, grad_norm**2, b_big)
            self.b_small, self.b_big = b_small, b_big
        self._pending += part
        self.seconds.append(self._spent + time.perf_counter() - start)
        self._spent = 0.0

    def report(self) -> dict[str, float] | None:
        """The smoothed figures over all ranks: grad_sq (|G|^2), trace (tr(S)), episodes (B_simple,
        NaN while the averaged |G|^2 is not above zero) and the band [episodes_low, episodes_high]
        (high: inf while |G|^2 is within two standard errors of zero). None where unavailable or
        nothing was measured yet. A collective wherever it is available."""
        if self.unavailable:
            return None
        pooled = self._pending
        if self.world_size > 1:
            pooled = [x / self.world_size for x in distributed.all_sum(pooled)]
        self._pending = []
        self.absorb(pooled)
        return self.figures()

    def absorb(self, pooled: list[float]) -> None:
        """Advance the averages over the ranks' mean (g2, trace) parts, update by update."""
        for g2, trace in zip(pooled[::2], pooled[1::2]):
            self.averages.add(g2, trace)

    @property
    def updates(self) -> int:
        return self.averages.updates

    def figures(self) -> dict[str, float] | None:
        """What `report` returns, from the averages as they stand."""
        return self.averages.figures()

    def describe(self, last: dict[str, float] | None) -> dict:
        """What summary.json records: the `last` report's figures (None for a NaN: JSON has none)
        and the measurement's own terms."""
        if self.unavailable:
            return {"unavailable": self.unavailable}
        figures = {key: value if math.isfinite(value) else None for key, value in (last or {}).items()}
        return figures | {
            "b_small": self.b_small,
            "b_big": self.b_big,
            "decay": self.decay,
            "updates": self.averages.updates,
            # per update on this rank; DDP's squared norms inside its hook are not counted
            "median_ms": 1e3 * statistics.median(self.seconds) if self.seconds else 0.0,
        }


class Halves:
    """The noise scale from the two halves of each update's episodes, the same figure on any world
    size: what a batch schedule can follow and still play on N ranks the episodes one rank plays
    (dist_vpg.batching.FollowNoise).

    An update's B episodes are numbered alike on every world size (train.episode_ids): each rank
    plays contiguous blocks, one per rollout. With d half the difference between the gradient of
    the first B / 2 episodes and that of the second, E|d|^2 = tr(S) / B and the update's gradient g
    has E|g|^2 = |G|^2 + tr(S) / B: |g|^2 - |d|^2 and B |d|^2 are unbiased for |G|^2 and tr(S). Each
    rank adds its rollouts' gradients with the sign of their half; one all_reduce of that vector
    (beside the strategy's) makes d, bitwise alike on every rank. The blocks must not straddle the
    middle: an even count of them (on an odd world size, each round is played as two rollouts).

    The gradient of successive updates would need no collective, but measured here it does not
    estimate |G|^2: under RMSprop successive gradients point apart (their product averages about
    -|G|^2 through a whole default run), the weights' step turning what it follows."""

    def __init__(self, decay: float, rank: int, world_size: int):
        self.averages = Averages(decay)
        self.rank, self.world_size = rank, world_size
        self._rollouts = RolloutGradients()
        self._signed: torch.Tensor | None = None

    def after_backward(self, params: list[torch.Tensor], k: int, rollouts: int) -> None:
        """Rollout k of this rank's `rollouts` has added its gradient to .grad."""
        own = self._rollouts.own(params, k, rollouts)
        first_half = self.rank * rollouts + k < self.world_size * rollouts / 2
        signed = own if first_half else -own
        self._signed = signed if k == 0 else self._signed + signed

    def after_step(self, grad_norm: float, episodes: int) -> None:
        """The update's reduced gradient had norm `grad_norm` (before clipping) over `episodes`
        episodes. A collective on more than one rank."""
        signed, self._signed = self._signed, None
        if self.world_size > 1:
            torch.distributed.all_reduce(signed)
            signed /= self.world_size
        self.add(grad_norm, episodes, signed)

    def add(self, grad_norm: float, episodes: int, half_difference: torch.Tensor) -> None:
        """Take in one update: its gradient's norm and d, over `episodes` episodes."""
        half_sq = float(half_difference.double().square().sum())
        self.averages.add(grad_norm**2 - half_sq, episodes * half_sq)

    def state_dict(self) -> dict:
        return {"averages": self.averages.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.averages.load_state_dict(state["averages"])
