"""Multi-process gloo tests: strategies equivalent to one process, ranks in lockstep, faults caught."""

from pathlib import Path

import pytest
import torch

from dist_vpg import checkpoint, sync
from dist_vpg.agent import Agent
from tests.helpers import raised, run_ranks, train_worker

pytestmark = pytest.mark.dist

SMALL = [
    "task.trials=20",
    "agent.hidden=16",
    "train.updates=5",
    "train.batch_episodes=12",
    "train.lr=0.003",
    "sync.check_every=1",
    "log.every=5",
    "checkpoint.every=5",
]


def _final_params(summary: dict) -> dict[str, torch.Tensor]:
    return checkpoint.load(checkpoint.existing(Path(summary["run_dir"]))[-1])["model"]


def _assert_close(a: dict, b: dict, atol: float) -> None:
    for name in a:
        diff = (a[name] - b[name]).abs().max().item()
        assert diff <= atol, f"{name} differs by {diff:g} (tolerance {atol:g})"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process training on the global batch."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    (summary,) = run_ranks(1, train_worker, None, SMALL + [f"run_dir={run_dir}"])
    assert raised(summary) is None, summary
    return _final_params(summary)


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("strategy", list(sync.STRATEGIES))
def test_strategy_matches_one_process(reference, tmp_path, strategy, world_size):
    run_dir = tmp_path / "run"
    summaries = run_ranks(
        world_size, train_worker, None, SMALL + [f"run_dir={run_dir}", f"sync.strategy={strategy}"]
    )
    for s in summaries:
        assert raised(s) is None, s
    # check_every=1: the checksums of every rank agreed after every update, or the run had failed.
    assert len({s["params_crc32"] for s in summaries}) == 1
    assert summaries[0]["world_size"] == world_size and summaries[0]["strategy"] == strategy
    # float16 on the wire rounds each gradient to ~3 decimal digits; the rest differ by summation order.
    _assert_close(_final_params(summaries[0]), reference, atol=2e-3 if strategy == "allreduce_fp16" else 2e-5)
    torch.manual_seed(0)  # the weights every run above started from (seed=0)
    initial = Agent(4, 2, 16).state_dict()
    moved = max((reference[k] - initial[k]).abs().max().item() for k in reference)
    assert moved > 1e-2  # the runs compared have trained, not stood still


def test_measuring_the_wait_splits_the_sync_phase_and_changes_nothing(reference, tmp_path):
    overrides = SMALL + [f"run_dir={tmp_path / 'run'}", "sync.measure_wait=true"]
    summaries = run_ranks(2, train_worker, None, overrides)
    for s in summaries:
        assert raised(s) is None, s
        assert {"sync_wait", "sync"} <= set(s["phase_median_s"])  # the barrier, then the collectives
    _assert_close(_final_params(summaries[0]), reference, atol=2e-5)


@pytest.mark.parametrize("rollout", ["twopass", "onepass"])
def test_torch_rollouts_train_like_native(reference, tmp_path, rollout):
    """The reference run is native (the default); the torch rollouts land on the same weights."""
    (summary,) = run_ranks(
        1, train_worker, None, SMALL + [f"run_dir={tmp_path / 'run'}", f"train.rollout={rollout}"]
    )
    assert raised(summary) is None, summary
    _assert_close(_final_params(summary), reference, atol=2e-5)


@pytest.mark.parametrize("world_size", [1, 2])
def test_accumulation_equals_a_larger_batch(tmp_path, world_size):
    base = [o for o in SMALL if not o.startswith("train.batch_episodes")]
    (big,) = run_ranks(
        1, train_worker, None, base + ["train.batch_episodes=24", f"run_dir={tmp_path / 'big'}"]
    )
    acc = run_ranks(
        world_size,
        train_worker,
        None,
        base + ["train.batch_episodes=6", "sync.accumulate=4", f"run_dir={tmp_path / 'acc'}"],
    )
    assert raised(big) is None and raised(acc[0]) is None, (big, acc)
    assert acc[0]["episodes"] == big["episodes"] == 5 * 24
    _assert_close(_final_params(acc[0]), _final_params(big), atol=2e-5)


def perturbed_rank_worker(bad_rank: int) -> str:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        torch.manual_seed(dist.get_rank())  # unlike seeds: the initial broadcast must fix that
        agent = Agent(4, 2, 8)
        sync.broadcast_initial(agent, None)
        sync.check_in_sync(agent, None)  # in sync after the broadcast
        if dist.get_rank() == bad_rank:
            with torch.no_grad():
                agent.lstm.weight_hh_l0[0, 0] += 1e-6
        sync.check_in_sync(agent, None)
        return "not caught"
    finally:
        dist.destroy_process_group()


def test_divergence_check_names_the_rank():
    results = run_ranks(3, perturbed_rank_worker, 2)
    for r in results:
        kind, message = raised(r)
        assert kind == "DivergedError" and "rank 2 diverged" in message


def nan_worker(strategy: str) -> list:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        torch.manual_seed(0)
        agent = Agent(4, 2, 8)
        opt = torch.optim.RMSprop(agent.parameters(), lr=0.01)
        strat = sync.make_strategy(strategy, agent)
        sync.broadcast_initial(agent, opt)
        model = strat.wrap()
        outcomes = []
        for poisoned in (True, False):
            before = [p.detach().clone() for p in agent.parameters()]
            opt.zero_grad()
            x = torch.rand(3, 4, 4)
            if poisoned and dist.get_rank() == 1:
                x[1, 2, 0] = float("nan")  # before the reduction, as a real fault would be
            logits, values = model(x)
            (logits.sum() + values.sum()).backward()
            result = strat.step(opt, max_norm=50.0)
            changed = any(not torch.equal(a, p) for a, p in zip(before, agent.parameters()))
            outcomes.append((result.applied, changed, sync.checksum(agent, None)))
        return outcomes
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("strategy", list(sync.STRATEGIES))
def test_nan_gradient_skips_the_step_on_every_rank(strategy):
    results = run_ranks(2, nan_worker, strategy)
    for r in results:
        assert raised(r) is None, r
    (skip0, step0), (skip1, step1) = [(r[0], r[1]) for r in results]
    assert skip0[:2] == (False, False) and skip1[:2] == (False, False)  # skipped, weights untouched
    assert step0[:2] == (True, True) and step1[:2] == (True, True)  # training goes on
    assert results[0][1][2] == results[1][1][2]  # and the ranks agree bit for bit
