import numpy as np
import pytest
import torch

from dist_vpg import noise
from dist_vpg.agent import REPLAY_SLICE, Agent
from dist_vpg.losses import a2c_loss
from dist_vpg.rollout import act, input_size, rollout, sample_actions
from dist_vpg.tasks import make_task
from dist_vpg.tasks import settings as task_settings


def _setup(name="bandit", batch=8, trials=100, seed=0, cell="lstm"):
    task = make_task(task_settings(name, trials=trials))
    torch.manual_seed(seed)
    agent = Agent(input_size(task, True), task.num_actions, 16, cell=cell)
    with torch.no_grad():  # a policy that is not uniform, so actions depend on the weights
        agent.policy.weight.normal_(0, 0.5)
    draws = noise.draw(
        seed, noise.TRAIN, 3, np.arange(batch), task.trials, task.episode_draws, task.trial_draws
    )
    return task, agent, draws


def _grads(agent, batch):
    agent.zero_grad()
    loss = a2c_loss(batch.logits, batch.values, batch.actions, batch.rewards, 0.9, 0.8, 0.05, 0.05)
    loss.total.backward()
    return [p.grad.clone() for p in agent.parameters()]


@pytest.mark.parametrize("name", ["bandit", "two_step"])
def test_onepass_and_twopass_give_the_same_gradients(name):
    task, agent, draws = _setup(name)
    one = rollout(agent, task, draws, "onepass", True)
    two = rollout(agent, task, draws, "twopass", True)
    # The same episodes: the actions come from the noise and the (equal) policies.
    assert torch.equal(one.actions, two.actions) and torch.equal(one.rewards, two.rewards)
    assert torch.equal(one.inputs, two.inputs)
    for a, b in zip(_grads(agent, one), _grads(agent, two)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fused_replay_matches_cell_steps_across_slices():
    task, agent, draws = _setup(batch=REPLAY_SLICE + 5, trials=12)
    one = rollout(agent, task, draws, "onepass", True)
    logits, values = agent(one.inputs)
    assert torch.allclose(logits, one.logits, atol=1e-5) and torch.allclose(values, one.values, atol=1e-5)


def test_inputs_carry_previous_action_and_reward():
    task, agent, draws = _setup(trials=10)
    r = act(agent, task, draws, True)
    x = r.inputs  # [T, B, 2 actions + reward + trial index]
    assert torch.all(x[0] == 0)
    assert torch.equal(x[1:, :, :2].argmax(-1), r.actions[:-1])
    assert torch.equal(x[1:, :, :2].sum(-1), torch.ones(9, 8))
    assert torch.equal(x[1:, :, 2], r.rewards[:-1])
    assert torch.allclose(x[:, 0, 3], torch.arange(10) / 10)


def test_initial_policy_is_uniform():
    task = make_task(task_settings())
    agent = Agent(input_size(task, True), task.num_actions)
    logits, _ = agent(torch.rand(5, 3, input_size(task, True)))
    assert torch.all(logits == 0)


def test_inverse_cdf_sampling():
    probs = torch.tensor([[0.2, 0.5, 0.3]]).expand(30000, 3)
    u = torch.rand(30000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(sample_actions(probs, u), minlength=3).float() / 30000
    assert torch.allclose(freq, probs[0], atol=0.01)


def test_episode_depends_only_on_its_index():
    task, agent, _ = _setup()
    ids = np.arange(6)
    whole = act(agent, task, noise.draw(0, noise.TRAIN, 1, ids, 100, 2, 1), True, False)
    part = act(agent, task, noise.draw(0, noise.TRAIN, 1, ids[4:], 100, 2, 1), True, False)
    assert torch.equal(whole.actions[:, 4:], part.actions)
    assert torch.equal(whole.rewards[:, 4:], part.rewards)
