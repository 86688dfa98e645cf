"""Batch scaling: weak scaling's global batch and learning-rate rule, the accumulation schedule, and
both keeping N ranks equal to 1 rank and resumed runs equal to uninterrupted ones."""

import shutil
from pathlib import Path

import pytest
import torch

from dist_vpg import batching, checkpoint, config
from dist_vpg.config import ConfigError
from tests.helpers import raised, run_ranks, train_worker
from tests.tensorboard_reader import read_scalars


def _plan(world_size: int, *overrides: str) -> batching.BatchPlan:
    return batching.plan(config.load(None, list(overrides)), world_size)


def test_strong_scaling_splits_the_batch_and_leaves_the_lr():
    p = _plan(4, "train.batch_episodes=256")
    assert (p.share, p.round_episodes, p.lr_factor, p.rounds(0)) == (64, 256, 1.0, 1)


@pytest.mark.parametrize("rule,factor", [("none", 1.0), ("sqrt", 2.0), ("linear", 4.0)])
def test_weak_scaling_grows_the_batch_with_the_ranks_and_scales_the_lr_by_its_rule(rule, factor):
    p = _plan(4, "train.batch_episodes=64", "train.weak_scaling=true", f"train.lr_scaling={rule}")
    assert (p.share, p.round_episodes, p.lr_factor) == (64, 256, factor)
    one = _plan(1, "train.batch_episodes=64", "train.weak_scaling=true", f"train.lr_scaling={rule}")
    assert (one.share, one.lr_factor) == (64, 1.0)  # the lr is the one set for a rank's batch


def test_the_accumulation_schedule_rises_linearly_and_counts_every_episode():
    p = _plan(
        2, "train.batch_episodes=16", "train.updates=11", "sync.accumulate=2", "sync.accumulate_final=7"
    )
    assert [p.rounds(u) for u in range(11)] == [2, 2, 3, 4, 4, 4, 5, 6, 6, 6, 7]
    assert p.episodes(10) == 7 * 16
    assert p.episodes_before(11) == 16 * sum(p.rounds(u) for u in range(11))
    assert p.episodes_before(0) == 0
    flat = _plan(2, "train.batch_episodes=16", "train.updates=11", "sync.accumulate=3")
    assert flat.episodes_before(5) == 5 * 48


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["train.lr_scaling=sqrt"], "train.lr_scaling"),  # a rule without weak scaling does nothing
        (["train.weak_scaling=true", "train.lr_scaling=cubic"], "train.lr_scaling"),
        (["sync.accumulate=4", "sync.accumulate_final=2"], "sync.accumulate_final"),
        (["sync.accumulate_final=-1"], "sync.accumulate_final"),
    ],
)
def test_ill_formed_scaling_is_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        config.load(None, overrides)


def test_weak_scaling_needs_no_even_split_but_whole_mirror_pairs():
    cfg = config.load(None, ["train.batch_episodes=6", "train.weak_scaling=true"])
    config.check_world(cfg, 4)  # 6 episodes on each of 4 ranks
    with pytest.raises(ConfigError, match="train.batch_episodes"):
        config.check_world(config.load(None, ["train.batch_episodes=6"]), 4)
    with pytest.raises(ConfigError, match="train.mirror"):
        mirrored = config.load(
            None, ["train.batch_episodes=5", "train.weak_scaling=true", "train.mirror=true"]
        )
        config.check_world(mirrored, 2)


SMALL = [
    "task.trials=20",
    "agent.hidden=16",
    "train.updates=8",
    "train.lr=0.001",
    "train.average=0",
    "sync.accumulate_final=0",  # one round throughout (a bandit run grows its batch where unset)
    "log.every=4",
    "checkpoint.every=4",
    "eval.every=0",
]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(checkpoint.existing(run_dir)[-1])["model"]


def _close(a: dict, b: dict, atol: float = 2e-5) -> None:
    for name in a:
        assert torch.allclose(a[name], b[name], atol=atol, rtol=0), name


def _whole_and_resumed(tmp_path: Path, overrides: list[str], at: int) -> tuple[dict, dict]:
    """The summaries of a 1-rank run and of the same run resumed from its checkpoint of update `at`."""
    (whole,) = run_ranks(1, train_worker, None, overrides + [f"run_dir={tmp_path / 'whole'}"])
    assert raised(whole) is None, whole
    midway = next(p for p in checkpoint.existing(tmp_path / "whole") if f"{at:08d}" in p.name)
    (tmp_path / "split").mkdir()
    shutil.copy(midway, tmp_path / "split" / midway.name)
    (resumed,) = run_ranks(
        1, train_worker, None, overrides + [f"run_dir={tmp_path / 'split'}", "train.resume=auto"]
    )
    return whole, resumed


@pytest.mark.dist
def test_two_weak_ranks_equal_one_rank_of_their_global_batch_and_scaled_lr(tmp_path):
    """2 ranks of 8 episodes each under the sqrt rule play the 16 episodes, at the lr times sqrt(2),
    that one rank of 16 plays when told that lr."""
    weak = ["train.batch_episodes=8", "train.weak_scaling=true", "train.lr_scaling=sqrt"]
    two = run_ranks(2, train_worker, None, SMALL + weak + [f"run_dir={tmp_path / 'weak'}"])
    lr = 0.001 * 2**0.5
    one = run_ranks(
        1,
        train_worker,
        None,
        SMALL + ["train.batch_episodes=16", f"train.lr={lr!r}", "train.lr_final=0.0001414213562373095"]
        + [f"run_dir={tmp_path / 'one'}"],
    )  # fmt: skip
    assert raised(two[0]) is None and raised(one[0]) is None, (two, one)
    assert two[0]["episodes"] == one[0]["episodes"] == 8 * 16
    _close(_weights(tmp_path / "weak"), _weights(tmp_path / "one"))


@pytest.mark.dist
def test_a_batch_schedule_plays_the_same_episodes_on_two_ranks_as_on_one(tmp_path):
    schedule = ["train.batch_episodes=8", "sync.accumulate=1", "sync.accumulate_final=4"]
    one = run_ranks(1, train_worker, None, SMALL + schedule + [f"run_dir={tmp_path / 'one'}"])
    two = run_ranks(2, train_worker, None, SMALL + schedule + [f"run_dir={tmp_path / 'two'}"])
    # DDP reduces inside the last round's backward: the rounds changing under it change nothing
    ddp = run_ranks(
        2, train_worker, None, SMALL + schedule + ["sync.strategy=ddp", f"run_dir={tmp_path / 'ddp'}"]
    )
    assert raised(one[0]) is None and raised(two[0]) is None and raised(ddp[0]) is None, (one, two, ddp)
    rounds = [1, 1, 2, 2, 3, 3, 4, 4]  # linear from 1 to 4 over 8 updates, rounded
    assert one[0]["episodes"] == two[0]["episodes"] == ddp[0]["episodes"] == 8 * sum(rounds)
    _close(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    _close(_weights(tmp_path / "one"), _weights(tmp_path / "ddp"))
    assert two[0]["noise_scale"]["b_big"] == 32  # the last update's: 4 rounds of 8
    assert ddp[0]["noise_scale"]["b_small"] == 16  # DDP: each rank's whole share of the last update


@pytest.mark.dist
def test_a_run_with_a_batch_schedule_resumes_exactly(tmp_path):
    """A run resumed from its update-4 checkpoint lands on the uninterrupted run's bits: each update's
    rounds follow from its index alone."""
    schedule = SMALL + ["train.batch_episodes=8", "sync.accumulate=1", "sync.accumulate_final=4"]
    whole, resumed = _whole_and_resumed(tmp_path, schedule, 4)
    assert raised(resumed) is None and resumed["resumed_from"] == 4, resumed
    assert resumed["params_crc32"] == whole["params_crc32"]
    # the summary counts the whole run's episodes and agent steps, the updates before the resume too
    assert (resumed["episodes"], resumed["agent_steps"]) == (whole["episodes"], whole["agent_steps"])


class _Measured:
    """A stand-in for gradient_noise.Halves whose averages report a chosen lower band."""

    def __init__(self, decay: float = 0.5):
        from dist_vpg.gradient_noise import Averages

        self.averages = Averages(decay)
        self.low = 0.0

    def after_step(self, grad_norm: float, episodes: int) -> None:
        self.averages.add(1.0, 1.0)  # counts the update; figures() is patched below

    def state_dict(self) -> dict:
        return {"averages": self.averages.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.averages.load_state_dict(state["averages"])


def _follow(lows: list[float], fraction=1.0, first=1, final=4, decay=0.5) -> batching.FollowNoise:
    estimate = _Measured(decay)
    follow = batching.FollowNoise(fraction, first, final, 100, estimate)
    for update, low in enumerate(lows):
        estimate.averages.figures = lambda low=low: {"episodes_low": low}
        follow.after_step(update, 1.0, round_episodes=100)
    return follow


def test_the_noise_following_schedule_grows_to_its_fraction_of_the_lower_band_and_never_shrinks():
    follow = _follow([50, 150, 350, 120, float("inf"), 900])
    # update 1 (the window of decay 0.5 is 2 updates) wants 2 rounds, update 2 wants 4; a lower
    # figure after does not shrink them, inf (|G|^2 lost in noise) is no reason to grow, 9 is capped
    assert follow.changes == [(0, 1), (2, 2), (3, 4)]
    assert [follow.rounds(u) for u in range(6)] == [1, 1, 2, 4, 4, 4]
    assert follow.rounds_before(5) == 1 + 1 + 2 + 4 + 4
    half = _follow([50, 150, 350], fraction=0.5)
    assert half.changes == [(0, 1), (3, 2)]  # half of 350 is 175: two rounds of 100, after update 2


def test_the_noise_following_schedule_waits_a_window_and_resumes_from_its_state():
    assert _follow([900] * 9, decay=0.9).changes == [(0, 1)]  # 9 updates, a window of 10
    assert _follow([900] * 10, decay=0.9).changes == [(0, 1), (10, 4)]
    follow = _follow([50, 150, 350])
    state = follow.state_dict()
    again = batching.FollowNoise(1.0, 1, 4, 100, _Measured())
    again.load_state_dict(state, update=3)
    assert again.changes == follow.changes and again.estimate.averages.updates == 3
    again.load_state_dict(state, update=2)  # a checkpoint before the last growth forgets it
    assert again.changes == [(0, 1), (2, 2)]


def test_a_noise_following_plan_splits_its_rounds_on_odd_world_sizes_only():
    follow = ["train.batch_episodes=12", "sync.follow_noise=0.5", "sync.accumulate_final=3"]
    one, two, three = (_plan(n, *follow) for n in (1, 2, 3))
    assert (one.split, one.rollout_share, one.rollouts(0)) == (2, 6, 2)
    assert (two.split, two.rollout_share, two.rollouts(0)) == (1, 6, 1)
    assert (three.split, three.rollout_share) == (2, 2)
    assert _plan(1, "train.batch_episodes=12", "sync.accumulate_final=3").split == 1
    assert "following 0.5 x the noise scale" in one.describe() and "each as 2 rollouts" in one.describe()
    assert one.episodes_before(3) == 3 * 12  # nothing grown yet


@pytest.mark.parametrize(
    "overrides,world_size,words",
    [
        (["sync.follow_noise=-1", "sync.accumulate_final=3"], None, "must be >= 0"),
        (["sync.follow_noise=0.5", "sync.accumulate_final=0"], None, "room to grow"),
        (["sync.follow_noise=0.5", "sync.accumulate_final=3", "sync.strategy=local_sgd"], None, "weights"),
        (["sync.follow_noise=0.5", "sync.accumulate_final=3", "sync.strategy=ddp"], None, "inside backward"),
        (["sync.follow_noise=0.5", "sync.accumulate_final=3", "train.batch_episodes=15"], 1, "do not halve"),
    ],
)
def test_a_noise_following_schedule_it_cannot_run_is_refused_in_one_line(overrides, world_size, words):
    with pytest.raises(ConfigError, match="sync.follow_noise") as refused:
        config.check_world(config.load(None, overrides), world_size) if world_size else config.load(
            None, overrides
        )
    assert words in str(refused.value) and "\n" not in str(refused.value)


FOLLOW = [s for s in SMALL if not s.startswith("train.updates=")] + [
    "train.updates=12",
    "train.batch_episodes=8",
    "sync.accumulate=1",
    "sync.accumulate_final=3",
    "sync.follow_noise=40",  # the noise scale is a few episodes here: 40 of them make 3 rounds
    "log.noise_scale_decay=0.8",  # decisions after a window of 5 updates
]


@pytest.mark.dist
def test_a_noise_following_schedule_grows_alike_on_two_ranks_and_on_one(tmp_path):
    """The halves' estimate is the same on any world size, so are the growths it decides, and with
    them the episodes: 1 rank (each round as two rollouts), 2 ranks, 2 ranks under reduce_broadcast."""
    runs = {
        name: run_ranks(n, train_worker, None, FOLLOW + extra + [f"run_dir={tmp_path / name}"])
        for name, n, extra in [
            ("one", 1, []),
            ("two", 2, []),
            ("broadcast", 2, ["sync.strategy=reduce_broadcast"]),
        ]
    }
    assert all(raised(r[0]) is None for r in runs.values()), runs
    schedules = {name: r[0]["batch_schedule"] for name, r in runs.items()}
    assert schedules["one"]["growths"], schedules  # it did grow: the comparison is not of constants
    assert schedules["one"]["growths"] == schedules["two"]["growths"] == schedules["broadcast"]["growths"]
    first, second = (schedules["two"]["noise_scale"][k] for k in ("grad_sq", "trace"))
    assert schedules["one"]["noise_scale"]["grad_sq"] == pytest.approx(first, rel=1e-3)
    assert schedules["one"]["noise_scale"]["trace"] == pytest.approx(second, rel=1e-3)
    assert runs["one"][0]["episodes"] == runs["two"][0]["episodes"] > 8 * 12
    # TensorBoard's charts/batch_episodes draws the schedule: each logged update's episodes
    grown = {g["update"]: g["episodes"] for g in schedules["one"]["growths"]}
    at = lambda step: max([8] + [e for u, e in grown.items() if u <= step])
    shown = read_scalars(tmp_path / "one" / "tb", "charts/batch_episodes")
    assert shown == {step: at(step) for step in (4, 8, 12)}, (shown, grown)
    _close(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    _close(_weights(tmp_path / "one"), _weights(tmp_path / "broadcast"))


@pytest.mark.dist
def test_a_noise_following_run_resumes_exactly(tmp_path):
    """Its growths and the estimate they follow are in the checkpoint: resumed from update 8, after
    the batch grew, the run lands on the uninterrupted run's bits, growths, estimate and episodes."""
    whole, resumed = _whole_and_resumed(tmp_path, FOLLOW, 8)
    assert any(g["update"] <= 8 for g in whole["batch_schedule"]["growths"]), whole["batch_schedule"]
    assert raised(resumed) is None and resumed["resumed_from"] == 8, resumed
    assert resumed["params_crc32"] == whole["params_crc32"]
    assert resumed["batch_schedule"] == whole["batch_schedule"]
    assert resumed["episodes"] == whole["episodes"]
