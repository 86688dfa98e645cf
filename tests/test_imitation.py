"""train.signal=imitation: the policy learns the exact Bayes-optimal action on its own histories."""

import numpy as np
import pytest
import torch

from dist_vpg import config, noise
from dist_vpg.rollout import make_agent, rollout_loss
from dist_vpg.tasks import make_task
from dist_vpg.tasks import settings as task_settings
from dist_vpg.tasks.bandit import bayes

LOSS = dict(gamma=0.9, lam=1.0, beta_v=0.05, beta_e=0.05)


@pytest.mark.parametrize("distribution", ["independent", "dependent"])
def test_the_expert_is_the_dp_on_the_counts_of_each_history(distribution):
    task = make_task(task_settings(distribution=distribution, trials=12))
    actions = torch.tensor([[0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 1]]).t()  # [T, 1]
    rewards = torch.tensor([[1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0]]).t().float()
    got = task.expert(None, actions, rewards)[:, 0]  # [T, 2]
    optimal = bayes.BayesOptimal(distribution, 12)
    for t in range(12):  # the counts before trial t, by hand
        s = [int(((actions[:t, 0] == a) & (rewards[:t, 0] == 1)).sum()) for a in (0, 1)]
        n = [int((actions[:t, 0] == a).sum()) for a in (0, 1)]
        table = optimal.solution.p_arm1[t]
        want = table[s[0] + (n[1] - s[1])] if optimal.dependent else table[s[0], n[0] - s[0], s[1]]
        assert got[t, 1].item() == pytest.approx(float(want))
        assert got[t].sum().item() == pytest.approx(1.0)


def test_imitation_learns_the_expert():
    """A few hundred steps of cross-entropy on the agent's own histories bring its choices close to
    the expert's on those same histories."""
    task = make_task(task_settings(trials=20))
    torch.manual_seed(0)
    agent = make_agent(task, True, 16)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-2)
    first = None
    for update in range(150):
        draws = noise.draw(0, noise.TRAIN, update, np.arange(64), 20, task.episode_draws, task.trial_draws)
        _, loss = rollout_loss(agent, task, draws, "native", True, "imitation", LOSS)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        first = loss.policy.item() if first is None else first
    assert loss.policy.item() < 0.5 * first, (first, loss.policy.item())


def test_imitation_is_refused_without_an_expert():
    with pytest.raises(config.ConfigError, match="train.signal: imitation needs an exact expert"):
        config.load(None, ["train.signal=imitation", "task.arms=3"])
    with pytest.raises(config.ConfigError, match="train.signal: imitation needs an exact expert"):
        config.load(None, ["train.signal=imitation", "task.name=two_step"])
