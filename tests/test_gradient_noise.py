"""The gradient noise scale: the estimators on synthetic gradients of known |G|^2 and tr(S), and the
training loop's figure the same whoever holds the small gradients (ranks, accumulation, DDP)."""

import math

import numpy as np
import pytest
import torch

from dist_vpg.gradient_noise import Halves, NoiseScale, unbiased
from dist_vpg.run_log import noise_scale_text
from dist_vpg.sync.ddp import DDPPowerSGD
from dist_vpg.sync.local_sgd import LocalSGD
from tests.helpers import raised, run_ranks, train_worker

DIM = 40
TRUE_G = np.full(DIM, 0.5)  # |G|^2 = 10
SIGMA = np.linspace(0.5, 3.0, DIM)  # per-episode gradient noise, independent coordinates
TRUE_G2, TRUE_TRACE = float(TRUE_G @ TRUE_G), float(SIGMA @ SIGMA)


def test_expected_squared_norms_give_the_exact_terms():
    """E|g_b|^2 = |G|^2 + tr(S) / b: fed the expectations, the estimators return the terms exactly."""
    for b_small, b_big in [(1, 2), (16, 32), (32, 4096), (128, 256)]:
        g2, trace = unbiased(TRUE_G2 + TRUE_TRACE / b_small, b_small, TRUE_G2 + TRUE_TRACE / b_big, b_big)
        assert g2 == pytest.approx(TRUE_G2, rel=1e-9) and trace == pytest.approx(TRUE_TRACE, rel=1e-9)


def _episode_gradients(rng, n: int) -> np.ndarray:
    return TRUE_G + SIGMA * rng.standard_normal((n, DIM))


@pytest.mark.parametrize("world_size,accumulate,share", [(1, 4, 8), (4, 1, 8), (2, 3, 5)])
def test_noise_scale_recovers_known_terms_from_sampled_gradients(world_size, accumulate, share):
    """Simulated updates as the loop makes them: each rollout's gradient accumulates into .grad
    divided by `accumulate`, the ranks' rollouts are the 'ranks' here, and the reduced norm is the
    mean's. Over 4000 updates the smoothed figures land on the true |G|^2, tr(S) and their ratio."""
    rng = np.random.default_rng(0)
    scales = [
        NoiseScale(share, world_size, decay=0.999, per_rank=False, most_rounds=accumulate)
        for _ in range(world_size)
    ]
    param = torch.zeros(DIM, dtype=torch.float64)
    for _ in range(4000):
        grads = _episode_gradients(rng, world_size * accumulate * share).reshape(
            world_size, accumulate, share, DIM
        )
        for rank, scale in enumerate(scales):
            param.grad = torch.zeros(DIM, dtype=torch.float64)
            for k in range(accumulate):
                param.grad += torch.from_numpy(grads[rank, k].mean(0)) / accumulate
                scale.after_backward([param], k, accumulate)
        reduced = grads.reshape(-1, DIM).mean(0)
        for scale in scales:
            scale.after_step(float(np.linalg.norm(reduced)), accumulate)
    # report()'s all_sum over ranks, done by hand: the ranks' mean parts, update by update
    pooled = np.mean([s._pending for s in scales], axis=0).tolist()
    scales[0].absorb(pooled)
    figures = scales[0].figures()
    assert figures["grad_sq"] == pytest.approx(TRUE_G2, rel=0.15)
    assert figures["trace"] == pytest.approx(TRUE_TRACE, rel=0.05)
    assert figures["episodes"] == pytest.approx(TRUE_TRACE / TRUE_G2, rel=0.15)
    # the band of about two standard errors holds the truth, and is not so wide as to say nothing
    assert figures["episodes_low"] < TRUE_TRACE / TRUE_G2 < figures["episodes_high"]
    assert figures["episodes_high"] / figures["episodes_low"] < 2


def test_per_rank_mode_takes_the_ranks_own_norm_and_ignores_grad():
    """DDP: .grad is already reduced after backward, so the rank's own squared norm comes from the
    strategy's hook, and the small batch is the rank's whole share."""
    scale = NoiseScale(share=8, world_size=2, decay=0.0, per_rank=True, most_rounds=2)
    param = torch.zeros(3)
    param.grad = torch.full((3,), 1e6)  # would wreck the figure if it were read
    scale.after_backward([param], 0, rounds=2)
    scale.after_step(grad_norm=2.0, rounds=2, local_sq=5.0)
    assert (scale.b_small, scale.b_big) == (16, 32)
    g2, trace = unbiased(5.0, 16, 4.0, 32)
    scale.world_size = 1  # report's all_sum is the identity on one process
    figures = scale.report()
    assert {k: figures[k] for k in ("episodes", "grad_sq", "trace")} == {
        "episodes": trace / g2,
        "grad_sq": g2,
        "trace": trace,
    }


def test_unresolved_until_the_averaged_signal_is_positive():
    scale = NoiseScale(share=4, world_size=1, decay=0.0, per_rank=False, most_rounds=2)
    param = torch.zeros(2)
    param.grad = torch.tensor([1.0, 0.0]) / 2
    scale.after_backward([param], 0, rounds=2)
    param.grad = param.grad + torch.tensor([-1.0, 0.0]) / 2  # rollouts +1 and -1: mean 0
    scale.after_backward([param], 1, rounds=2)
    scale.after_step(grad_norm=0.0, rounds=2)
    report = scale.report()
    assert report["grad_sq"] < 0 and math.isnan(report["episodes"]) and report["trace"] > 0
    assert scale.describe(report)["episodes"] is None  # JSON has no NaN


def test_non_finite_updates_are_left_out():
    scale = NoiseScale(share=4, world_size=1, decay=0.5, per_rank=False, most_rounds=2)
    param = torch.zeros(2)
    param.grad = torch.tensor([3.0, 4.0]) / 2
    scale.after_backward([param], 0, rounds=2)
    scale.after_step(grad_norm=float("inf"), rounds=2)
    assert scale.report() is None and scale.updates == 0
    scale.after_backward([param], 0, rounds=2)
    param.grad = param.grad * 2
    scale.after_backward([param], 1, rounds=2)
    scale.after_step(grad_norm=5.0, rounds=2)
    g2, trace = unbiased(25.0, 4, 25.0, 8)
    figures = scale.report()
    assert scale.updates == 1 and (figures["grad_sq"], figures["trace"]) == pytest.approx((g2, trace))


def test_a_signal_within_noise_of_zero_gives_a_floor_not_a_figure():
    """|G|^2's estimates of 2 +- 30 (trace 1000): their mean is no figure at all, but the noise scale
    is at least trace / (mean + two standard errors)."""
    scale = NoiseScale(share=4, world_size=1, decay=0.9, per_rank=False, most_rounds=2)
    estimates = [2.0 + 30.0 * (-1) ** i for i in range(400)]
    scale.absorb([x for g2 in estimates for x in (g2, 1000.0)])
    figures = scale.figures()
    assert figures["episodes_high"] == float("inf") and figures["episodes_low"] > 0
    assert figures["episodes_low"] < 1000.0 / figures["grad_sq"]
    assert noise_scale_text(figures).startswith("at least ")
    assert scale.describe(figures)["episodes_high"] is None  # JSON has no infinity


def test_a_growing_batch_is_measured_at_each_update_s_own_sizes():
    """A batch schedule changes the rounds from update to update: each update's estimate uses its
    own b_big, and an update of one round on one rank (nothing smaller) is left out."""
    scale = NoiseScale(share=4, world_size=1, decay=0.5, per_rank=False, most_rounds=3)
    assert not scale.unavailable
    param = torch.zeros(1, dtype=torch.float64)
    expected = []
    for rounds, rollouts in [(1, [2.0]), (2, [1.0, 3.0]), (3, [0.0, 3.0, 6.0])]:
        param.grad = torch.zeros(1, dtype=torch.float64)
        for k, g in enumerate(rollouts):
            param.grad += g / rounds
            scale.after_backward([param], k, rounds)
        mean = sum(rollouts) / rounds
        scale.after_step(abs(mean), rounds)
        if rounds > 1:
            expected.append(unbiased(sum(g * g for g in rollouts) / rounds, 4, mean * mean, 4 * rounds))
    figures = scale.report()
    assert scale.updates == 2 and scale.b_big == 12
    g2 = (0.5 * expected[0][0] + expected[1][0]) / 1.5  # weights 0.5 * 0.5 and 0.5, normalized
    trace = (0.5 * expected[0][1] + expected[1][1]) / 1.5
    assert (figures["grad_sq"], figures["trace"]) == pytest.approx((g2, trace))


def test_where_nothing_can_be_measured_it_says_why():
    one = NoiseScale(share=16, world_size=1, decay=0.99, per_rank=False, most_rounds=1)
    assert "sync.accumulate=2" in one.unavailable
    assert one.report() is None and one.describe(None) == {"unavailable": one.unavailable}
    assert NoiseScale(16, 1, 0.99, per_rank=True, most_rounds=4).unavailable  # DDP on one rank
    assert "compresses" in DDPPowerSGD.noise_scale_unavailable
    assert "weights, not gradients" in LocalSGD.noise_scale_unavailable


SMALL = [
    "task.trials=20",
    "agent.hidden=16",
    "train.updates=12",
    "train.lr=0.001",
    "log.every=4",
    "sync.accumulate_final=0",  # one round throughout (a bandit run grows its batch where unset)
    "checkpoint.every=12",
    "eval.every=0",
    "log.noise_scale_decay=0.9",
]


@pytest.mark.dist
def test_two_ranks_and_two_accumulation_rounds_give_the_same_figure(tmp_path):
    """The same episodes cut two ways (2 ranks of 16, or 1 rank of 2 rounds of 16) give the same small
    and large gradients, so the same noise scale; DDP sees each rank's gradient in its hook and
    gives it too."""
    runs = {
        "ranks": (2, ["train.batch_episodes=32"]),
        "rounds": (1, ["train.batch_episodes=16", "sync.accumulate=2"]),
        "ddp": (2, ["train.batch_episodes=32", "sync.strategy=ddp"]),
    }
    figures = {}
    for name, (world_size, overrides) in runs.items():
        summaries = run_ranks(
            world_size, train_worker, None, SMALL + overrides + [f"run_dir={tmp_path / name}"]
        )
        assert raised(summaries[0]) is None, summaries
        figures[name] = summaries[0]["noise_scale"]
        assert figures[name]["b_small"] == 16 and figures[name]["b_big"] == 32
        assert figures[name]["updates"] == 12
    for key in ("grad_sq", "trace"):
        assert figures["rounds"][key] == pytest.approx(figures["ranks"][key], rel=1e-3), figures
        assert figures["ddp"][key] == pytest.approx(figures["ranks"][key], rel=1e-3), figures
    assert figures["ranks"]["trace"] > 0


def _halves_of_one_update(blocks: np.ndarray, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reduced gradient and the ranks' mean half difference when `world_size` ranks play the
    update's blocks (each one rollout's mean gradient, in the episodes' order) as the loop does:
    each rank its contiguous run of blocks, each rollout adding its gradient / rollouts to .grad."""
    rollouts = len(blocks) // world_size
    param = torch.zeros(DIM, dtype=torch.float64)
    signed = []
    for rank in range(world_size):
        halves = Halves(decay=0.5, rank=rank, world_size=world_size)
        param.grad = torch.zeros(DIM, dtype=torch.float64)
        for k in range(rollouts):
            param.grad += torch.from_numpy(blocks[rank * rollouts + k]) / rollouts
            halves.after_backward([param], k, rollouts)
        signed.append(halves._signed)
    return torch.from_numpy(blocks.mean(0)), torch.stack(signed).mean(0)


def test_the_half_difference_is_the_same_vector_on_any_world_size():
    """Four blocks of episodes: 1 rank of 4 rollouts, 2 ranks of 2, 4 ranks of 1 all make d =
    (first two blocks' mean - last two's) / 2, the update's own split in the episodes' order."""
    blocks = np.random.default_rng(2).standard_normal((4, DIM))
    expected = (blocks[:2].mean(0) - blocks[2:].mean(0)) / 2
    for world_size in (1, 2, 4):
        _, d = _halves_of_one_update(blocks, world_size)
        assert torch.allclose(d, torch.from_numpy(expected), atol=1e-12), world_size


def test_halves_recover_known_terms_from_sampled_gradients():
    rng = np.random.default_rng(3)
    halves = Halves(decay=0.999, rank=0, world_size=1)
    share, blocks = 8, 4
    for _ in range(4000):
        grads = _episode_gradients(rng, blocks * share).reshape(blocks, share, DIM).mean(1)
        g, d = _halves_of_one_update(grads, 2)
        halves.add(float(g.norm()), blocks * share, d)
    figures = halves.averages.figures()
    assert figures["grad_sq"] == pytest.approx(TRUE_G2, rel=0.15)
    assert figures["trace"] == pytest.approx(TRUE_TRACE, rel=0.1)
    assert figures["episodes_low"] < TRUE_TRACE / TRUE_G2 < figures["episodes_high"]
