"""The privileged critic: the value head also sees the task's hidden parameters and the trial
index; the policy, and so everything the agent plays, stays a function of its own inputs."""

import numpy as np
import pytest
import torch

from dist_vpg import checkpoint, config, evaluation, noise
from dist_vpg.rollout import make_agent, privileged_features, rollout_loss
from dist_vpg.tasks import make_task
from dist_vpg.tasks import settings as task_settings
from tests.helpers import raised, run_ranks, train_worker

LOSS = dict(gamma=0.9, lam=1.0, beta_v=0.05, beta_e=0.05)


def _setup(batch=32):
    task = make_task(task_settings())
    torch.manual_seed(0)
    agent = make_agent(task, True, 16, privileged_critic=True)
    with torch.no_grad():
        agent.policy.weight.normal_(0, 1.0)
        agent.privileged.weight.normal_(0, 1.0)
    draws = noise.draw(0, noise.TRAIN, 1, np.arange(batch), task.trials, task.episode_draws, task.trial_draws)
    return task, agent, draws


def test_features_are_the_arms_and_the_trial_index():
    task, agent, draws = _setup()
    features = privileged_features(task, draws)
    assert features.shape == (task.trials, 32, 3)
    assert torch.equal(features[5, :, :2], task.reset(draws.episode).probs)
    assert torch.allclose(features[:, 0, 2], torch.arange(task.trials) / task.trials)


@pytest.mark.parametrize("mode", ["native", "twopass"])
def test_the_critic_sees_the_features_and_the_policy_does_not(mode):
    task, agent, draws = _setup()
    batch, loss = rollout_loss(agent, task, draws, mode, True, "regret", LOSS)
    plain = batch.values - agent.privileged(privileged_features(task, draws)).squeeze(-1)
    with torch.no_grad():
        agent.privileged.weight.mul_(-3.0)  # another critic, the same policy
    other, _ = rollout_loss(agent, task, draws, mode, True, "regret", LOSS)
    assert torch.equal(other.actions, batch.actions) and torch.equal(other.logits, batch.logits)
    assert not torch.allclose(other.values, batch.values)
    assert torch.allclose(
        other.values - agent.privileged(privileged_features(task, draws)).squeeze(-1), plain, atol=1e-5
    )
    agent.zero_grad()
    loss.total.backward()
    assert agent.privileged.weight.grad.abs().max() > 0


def test_native_and_twopass_give_the_same_gradients():
    task, agent, draws = _setup()
    grads = []
    for mode in ("native", "twopass"):
        agent.zero_grad()
        rollout_loss(agent, task, draws, mode, True, "regret", LOSS)[1].total.backward()
        grads.append({n: p.grad.clone() for n, p in agent.named_parameters()})
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], rtol=1e-4, atol=2e-6), name


def test_evaluation_plays_what_the_plain_agent_plays():
    task, agent, _ = _setup()
    plain = make_agent(task, True, 16)
    plain.load_state_dict({k: v for k, v in agent.state_dict().items() if not k.startswith("privileged")})
    ours = evaluation.evaluate_agent(agent, task, True, episodes=200, seed=5)
    theirs = evaluation.evaluate_agent(plain, task, True, episodes=200, seed=5)
    assert np.array_equal(ours.regrets, theirs.regrets) and np.array_equal(ours.actions, theirs.actions)


def test_a_task_without_features_is_refused_in_one_line():
    with pytest.raises(config.ConfigError, match="agent.privileged_critic: the two_step task offers no"):
        config.load(None, ["task.name=two_step", "agent.privileged_critic=true"])


@pytest.mark.slow
def test_training_with_it_saves_an_agent_evaluation_loads(tmp_path):
    run = tmp_path / "run"
    args = ["train.updates=3", "agent.privileged_critic=true", f"run_dir={run}"]
    (summary,) = run_ranks(1, train_worker, "configs/smoke.yaml", args)
    assert raised(summary) is None, summary
    agent, cfg = checkpoint.load_agent(checkpoint.existing(run)[-1])
    assert cfg.agent.privileged_critic and agent.privileged is not None
