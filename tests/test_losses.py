import itertools

import numpy as np
import pytest
import torch

from dist_vpg.agent import Agent
from dist_vpg.losses import a2c_loss, advantages, discounted_sum, horizons, relative_to_task, training_signal


def _reference_gae(rewards, values, gamma, lam):
    T, B = rewards.shape
    adv = np.zeros((T, B))
    running = np.zeros(B)
    for t in reversed(range(T)):
        next_value = values[t + 1] if t + 1 < T else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        adv[t] = running
    return adv


def test_discounted_sum_matches_loop():
    x = np.random.default_rng(0).normal(size=(7, 3))
    expected = np.zeros_like(x)
    acc = np.zeros(3)
    for t in reversed(range(7)):
        acc = x[t] + 0.9 * acc
        expected[t] = acc
    got = discounted_sum(torch.tensor(x, dtype=torch.float32), 0.9)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_gae_matches_loop_and_lambda_one_is_return_minus_value():
    rng = np.random.default_rng(1)
    r, v = rng.integers(0, 2, (12, 4)).astype(float), rng.normal(size=(12, 4))
    for lam in (0.0, 0.5, 0.95, 1.0):
        got = advantages(torch.tensor(r).float(), torch.tensor(v).float(), 0.8, lam)
        np.testing.assert_allclose(got.numpy(), _reference_gae(r, v, 0.8, lam), rtol=1e-5, atol=1e-5)
    returns = discounted_sum(torch.tensor(r).float(), 0.8)
    got = advantages(torch.tensor(r).float(), torch.tensor(v).float(), 0.8, 1.0)
    np.testing.assert_allclose(got.numpy(), (returns - torch.tensor(v).float()).numpy(), atol=1e-5)


def _reference_loss(logits, values, actions, rewards, gamma, lam, beta_v, beta_e, value_scale=False):
    """The loss written out episode by episode, trial by trial, in float64. With value_scale the
    critic's output at trial t is a return per discounted trial left: V = output * sum_k gamma**k
    over the trials left, and its error is measured per trial left too."""
    T, B, _ = logits.shape
    left = torch.tensor([sum(gamma**k for k in range(T - t)) for t in range(T)], dtype=torch.float64)
    scale = left if value_scale else torch.ones(T, dtype=torch.float64)
    v = values * scale.unsqueeze(1)
    adv = torch.tensor(_reference_gae(rewards.numpy(), v.detach().numpy(), gamma, lam))
    total = 0.0
    for b in range(B):
        policy = value = entropy = 0.0
        for t in range(T):
            log_p = torch.log_softmax(logits[t, b], dim=0)
            policy = policy - log_p[actions[t, b]] * adv[t, b]
            target = adv[t, b] + v[t, b].detach()
            value = value + 0.5 * ((target - v[t, b]) / scale[t]) ** 2
            entropy = entropy - (log_p.exp() * log_p).sum()
        total = total + policy + beta_v * value - beta_e * entropy
    return total / B


def _random_batch(seed: int, T: int, B: int, A: int):
    """logits [T, B, A] and values [T, B] (float64, requiring gradients), actions, 0/1 rewards."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, B, A, generator=g, dtype=torch.float64, requires_grad=True)
    values = torch.randn(T, B, generator=g, dtype=torch.float64, requires_grad=True)
    actions = torch.randint(0, A, (T, B), generator=g)
    rewards = torch.randint(0, 2, (T, B), generator=g).double()
    return logits, values, actions, rewards


def test_a2c_loss_and_its_gradients_match_reference():
    logits, values, actions, rewards = _random_batch(0, 6, 5, 3)
    args = (actions, rewards, 0.9, 0.7, 0.05, 0.05)
    ours = a2c_loss(logits, values, *args)
    grads = torch.autograd.grad(ours.total, (logits, values))
    ref = _reference_loss(logits, values, *args)
    ref_grads = torch.autograd.grad(ref, (logits, values))
    assert torch.allclose(ours.total, ref)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b)
    assert torch.allclose(ours.total, ours.policy + 0.05 * ours.value - 0.05 * ours.entropy)


def test_value_scaled_loss_and_its_gradients_match_reference():
    T = 7
    logits, values, actions, rewards = _random_batch(1, T, 4, 2)
    for gamma, lam in ((1.0, 1.0), (0.9, 0.8), (0.97, 0.3)):
        args = (actions, rewards, gamma, lam, 0.5, 0.01)
        ours = a2c_loss(logits, values, *args, value_scale=True)
        ref = _reference_loss(logits, values, *args, value_scale=True)
        assert torch.allclose(ours.total, ref)
        for a, b in zip(
            torch.autograd.grad(ours.total, (logits, values)), torch.autograd.grad(ref, (logits, values))
        ):
            assert torch.allclose(a, b)
    # a critic that predicts the mean reward per trial left exactly has no value error at gamma 1
    exact = rewards.flip(0).cumsum(0).flip(0) / torch.arange(T, 0, -1, dtype=torch.float64).unsqueeze(1)
    assert a2c_loss(logits, exact, actions, rewards, 1.0, 1.0, 0.5, 0.0, value_scale=True).value == 0


def test_horizons_count_the_discounted_trials_left():
    np.testing.assert_allclose(horizons(4, 1.0).numpy(), [4, 3, 2, 1])
    np.testing.assert_allclose(horizons(3, 0.5).numpy(), [1.75, 1.5, 1.0])


def test_uniform_policy_has_maximal_entropy():
    logits = torch.zeros(4, 3, 2)
    loss = a2c_loss(
        logits,
        torch.zeros(4, 3),
        torch.zeros(4, 3, dtype=torch.long),
        torch.zeros(4, 3),
        0.9,
        1.0,
        0.05,
        0.05,
    )
    assert torch.allclose(loss.entropy, torch.tensor(4 * np.log(2), dtype=torch.float32))


def _every_episode(probs: tuple[float, float], trials: int):
    """Every (actions, rewards) history of a 2-armed bandit with arm probabilities `probs`, as the
    agent's inputs [T, N, 3] (one-hot previous action, previous reward), actions and rewards [T, N],
    regrets [T, N] and the chance of the rewards given the actions [N]."""
    histories = list(itertools.product(itertools.product((0, 1), repeat=2), repeat=trials))
    n = len(histories)
    actions = torch.tensor([[a for a, _ in h] for h in histories]).T  # [T, N]
    rewards = torch.tensor([[float(r) for _, r in h] for h in histories], dtype=torch.float64).T
    p = torch.tensor(probs, dtype=torch.float64)
    chosen = p[actions]
    inputs = torch.zeros(trials, n, 3, dtype=torch.float64)
    inputs[1:, :, :2] = torch.nn.functional.one_hot(actions[:-1], 2).double()
    inputs[1:, :, 2] = rewards[:-1]
    reward_chance = torch.where(rewards > 0, chosen, 1 - chosen).prod(0)
    return inputs, actions, rewards, p.max() - chosen, reward_chance


def _flat_gradient(loss, agent):
    grads = torch.autograd.grad(loss, list(agent.parameters()), allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, agent.parameters())]
    )


def _expected_gradient(agent, inputs, actions, signal, reward_chance, gamma):
    """The A2C policy gradient's exact expectation: each history's loss weighted by its chance."""
    logits, values = agent(inputs)
    with torch.no_grad():
        chance = (
            torch.softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1).prod(0) * reward_chance
        )
    expected_loss = sum(
        chance[k]
        * a2c_loss(
            logits[:, k : k + 1],
            values[:, k : k + 1],
            actions[:, k : k + 1],
            signal[:, k : k + 1],
            gamma,
            1.0,
            0.0,
            0.0,
        ).total
        for k in range(len(chance))
    )
    return _flat_gradient(expected_loss, agent), chance


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_regret_signal_leaves_the_expected_policy_gradient_unchanged(gamma):
    """Summed exactly over every history of a 3-trial bandit, the policy gradient is the same whether
    the loss sees the rewards paid or minus the expected regrets; at gamma 1 both are the gradient
    of the expected return itself, and + regret (the wrong sign) is not."""
    torch.manual_seed(0)
    agent = Agent(3, 2, hidden=5).double()
    torch.nn.init.normal_(agent.policy.weight, std=0.5)
    inputs, actions, rewards, regrets, reward_chance = _every_episode((0.3, 0.8), 3)
    by_reward, weight = _expected_gradient(
        agent, inputs, actions, training_signal(rewards, regrets, "reward"), reward_chance, gamma
    )
    by_regret, _ = _expected_gradient(
        agent, inputs, actions, training_signal(rewards, regrets, "regret"), reward_chance, gamma
    )
    assert weight.sum().item() == pytest.approx(1.0)
    assert by_reward.norm() > 1e-3
    torch.testing.assert_close(by_regret, by_reward, rtol=1e-9, atol=1e-12)
    wrong_sign, _ = _expected_gradient(agent, inputs, actions, regrets, reward_chance, gamma)
    assert (wrong_sign - by_reward).norm() > 0.1 * by_reward.norm()
    if gamma == 1.0:  # the score-function estimate is the exact gradient of -E[return]
        logits, _ = agent(inputs)
        chance = torch.softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1).prod(0)
        expected_return = (chance * reward_chance * rewards.sum(0)).sum()
        torch.testing.assert_close(by_reward, _flat_gradient(-expected_return, agent), rtol=1e-9, atol=1e-12)


def test_training_signal_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="unknown training signal 'cost'"):
        training_signal(torch.zeros(2, 1), torch.zeros(2, 1), "cost")


def test_relative_to_task_subtracts_the_other_episodes_mean():
    adv = torch.tensor([[1.0, 3.0, 5.0, 0.0, 0.0, 6.0]])  # two tasks of 3 episodes
    expected = [[1 - 4, 3 - 3, 5 - 2, 0 - 3, 0 - 3, 6 - 0]]
    torch.testing.assert_close(relative_to_task(adv, 3), torch.tensor(expected, dtype=torch.float32))


def test_episodes_sharing_a_task_leave_the_expected_policy_gradient_unchanged():
    """Two episodes on one task, each advantage taken relative to the other's: summed exactly over
    every pair of 2-trial histories, the expected gradient is that of independent episodes."""
    torch.manual_seed(1)
    agent = Agent(3, 2, hidden=4).double()
    torch.nn.init.normal_(agent.policy.weight, std=0.5)
    torch.nn.init.normal_(agent.value.weight, std=0.5)  # a critic that is wrong, as critics are
    inputs, actions, rewards, regrets, reward_chance = _every_episode((0.2, 0.7), 2)
    signal = training_signal(rewards, regrets, "regret")
    alone, chance = _expected_gradient(agent, inputs, actions, signal, reward_chance, 1.0)
    n = len(chance)
    first, second = torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n)
    pairs = torch.stack([first, second], 1).flatten()  # [2 n^2]: (i, j) side by side
    logits, values = agent(inputs[:, pairs])
    expected_loss = sum(
        chance[i]
        * chance[j]
        * a2c_loss(
            logits[:, 2 * k : 2 * k + 2],
            values[:, 2 * k : 2 * k + 2],
            actions[:, [i, j]],
            signal[:, [i, j]],
            1.0,
            1.0,
            0.0,
            0.0,
            episodes_per_task=2,
        ).total
        for k, (i, j) in enumerate(zip(first.tolist(), second.tolist()))
    )
    together = _flat_gradient(expected_loss, agent)
    assert alone.norm() > 1e-3
    torch.testing.assert_close(together, alone, rtol=1e-9, atol=1e-12)
