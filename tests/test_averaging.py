"""The weights' exponential average: its arithmetic, its place in checkpoints, and which weights
evaluation loads."""

from pathlib import Path

import pytest
import torch

from dist_vpg import checkpoint
from dist_vpg.agent import Agent
from dist_vpg.averaging import WeightAverage
from tests.helpers import raised, run_ranks, train_worker

SMOKE = "configs/smoke.yaml"


def test_average_is_a_weighted_mean_then_the_exponential_one():
    """decay 0.9: the mean of the trained weights over the first 19 updates, update k weighing k
    (the initial weights left out), then 0.9 * average + 0.1 * weights."""
    agent = Agent(5, 2, 8)
    average = WeightAverage(agent, 0.9)
    seen, want = [], None
    for n in range(1, 26):
        with torch.no_grad():
            for p in agent.parameters():
                p.add_(torch.randn_like(p))
        average.update(agent)
        seen.append([p.detach().clone() for p in agent.parameters()])
        if n <= 19:
            k = torch.arange(1.0, n + 1)
            want = [(torch.stack(ws) * k.view(-1, *[1] * ws[0].dim())).sum(0) / k.sum() for ws in zip(*seen)]
        else:
            want = [0.9 * w + 0.1 * p.detach() for w, p in zip(want, agent.parameters())]
        for got, w in zip(average.model.parameters(), want):
            assert torch.allclose(got, w, atol=1e-5), n
    assert average.count == 25
    assert not any(p.requires_grad for p in average.model.parameters())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(agent, 1.0)


def test_an_average_from_before_the_warm_up_goes_on_as_an_exponential_one():
    agent = Agent(5, 2, 8)
    average = WeightAverage(agent, 0.9)
    average.load_state_dict(Agent(5, 2, 8).state_dict(), None)  # a checkpoint without average_updates
    before = [p.clone() for p in average.model.parameters()]
    average.update(agent)
    for got, b, p in zip(average.model.parameters(), before, agent.parameters()):
        assert torch.allclose(got, 0.9 * b + 0.1 * p.detach(), atol=1e-6)


@pytest.mark.slow
def test_checkpoints_keep_the_average_and_evaluation_loads_it(tmp_path):
    run = tmp_path / "run"
    (summary,) = run_ranks(1, train_worker, SMOKE, ["train.updates=6", "train.average=0.5", f"run_dir={run}"])
    assert raised(summary) is None, summary
    path = checkpoint.existing(run)[-1]
    state = checkpoint.load(path)
    assert set(state["average"]) == set(state["model"]) and state["average_updates"] == 6
    assert any(not torch.equal(state["average"][k], state["model"][k]) for k in state["model"])
    averaged, _ = checkpoint.load_agent(path)  # auto: the average
    trained, _ = checkpoint.load_agent(path, weights="trained")
    for name, value in averaged.state_dict().items():
        assert torch.equal(value, state["average"][name])
        assert torch.equal(trained.state_dict()[name], state["model"][name])

    without = Path(__file__).resolve().parent.parent / "pretrained/bandit_dependent.pt"  # no average
    assert "average" not in checkpoint.load(without)
    with pytest.raises(checkpoint.CheckpointError, match="holds no weight average"):
        checkpoint.load_agent(without, weights="average")


def test_a_resumed_average_goes_on_with_its_warm_up():
    """Restored with its count, an average inside its warm-up goes on with it."""
    agent = Agent(5, 2, 8)
    whole = WeightAverage(agent, 0.9)
    for _ in range(3):
        with torch.no_grad():
            for p in agent.parameters():
                p.add_(torch.randn_like(p))
        whole.update(agent)
    resumed = WeightAverage(Agent(5, 2, 8), 0.9)
    resumed.load_state_dict(whole.state_dict(), whole.count)
    with torch.no_grad():
        for p in agent.parameters():
            p.add_(torch.randn_like(p))
    whole.update(agent)
    resumed.update(agent)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
