"""A2C losses as pure functions: tensors in, tensors out, time first ([T, B])."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F


class LossTerms(NamedTuple):
    total: torch.Tensor  # policy + beta_v * value - beta_e * entropy
    policy: torch.Tensor
    value: torch.Tensor
    entropy: torch.Tensor


@lru_cache(maxsize=16)
def _discount_matrix(length: int, factor: float) -> torch.Tensor:
    """M [T, T] with M[t, k] = factor**(k - t) for k >= t, else 0."""
    steps = torch.arange(length, dtype=torch.float64)
    power = steps.unsqueeze(0) - steps.unsqueeze(1)  # [T, T]: k - t
    m = torch.where(power >= 0, torch.tensor(factor, dtype=torch.float64) ** power.clamp(min=0), 0.0)
    return m


def discounted_sum(x: torch.Tensor, factor: float) -> torch.Tensor:
    """y[t] = sum_{k >= t} factor**(k - t) * x[k] over an episode that ends after x[T-1].
    x [T, B] -> y [T, B]."""
    return _discount_matrix(x.shape[0], float(factor)).to(x.dtype) @ x


def horizons(length: int, gamma: float) -> torch.Tensor:
    """[T] discounted count of the trials left from each trial: sum_{k=t}^{T-1} gamma**(k - t).
    The largest return the rest of an episode can hold when each reward is at most 1."""
    return discounted_sum(torch.ones(length, 1, dtype=torch.float64), gamma)[:, 0]


def training_signal(rewards: torch.Tensor, regrets: torch.Tensor, signal: str) -> torch.Tensor:
    """What the loss learns from [T, B]: the rewards paid (`reward`) or minus the expected regrets.

    -regret[t] = E[r_t | task, a_t] - max_a E[r | task, a]. The first term has the reward's
    expectation given everything up to the action, so it leaves the policy gradient's expectation
    unchanged (a reward r_k enters the gradient only through score terms of trials t <= k, which
    are fixed before r_k is drawn); the second is a constant of the episode, which no policy can
    change, so the best policy for any discount is the same (and as a baseline that does not depend
    on the action it biases no gradient). What goes is noise: a 100-trial undiscounted return has a
    standard deviation of about 24 between independent-arm episodes through the payouts alone,
    while the regret it carries is a few trials' worth.
    """
    if signal == "reward":
        return rewards
    if signal == "regret":
        return -regrets
    raise ValueError(f"unknown training signal {signal!r}")


def advantages(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """GAE(lambda) advantages [T, B]. Episodes end after T trials, so nothing is bootstrapped past
    the last one: V(s_T) = 0. With lam = 1 this is the discounted return minus V."""
    next_values = torch.cat([values[1:], torch.zeros_like(values[:1])])
    deltas = rewards + gamma * next_values - values  # [T, B]
    return discounted_sum(deltas, gamma * lam)


def relative_to_task(adv: torch.Tensor, k: int) -> torch.Tensor:
    """adv [T, B] with B in groups of k consecutive episodes -> each minus its group's others' mean:
    a_i - (S - a_i) / (k - 1) = k / (k - 1) * (a_i - S / k)."""
    grouped = adv.view(adv.shape[0], -1, k)
    return ((grouped - grouped.mean(-1, keepdim=True)) * (k / (k - 1))).view_as(adv)


def a2c_loss(
    logits: torch.Tensor,
    values: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    gamma: float,
    lam: float,
    beta_v: float,
    beta_e: float,
    value_scale: bool = False,
    episodes_per_task: int = 1,
) -> LossTerms:
    """A2C loss of a batch of episodes: summed over the T trials, averaged over the B episodes.

    logits [T, B, A], values [T, B] carry gradients; actions [T, B] long; rewards [T, B].
    The critic's target is the lambda-return (advantage + V), held fixed.

    With `value_scale`, the value head's output is a return per trial left: V = horizons * values,
    and the critic's error is measured in the same unit, (target - V) / horizon. Undiscounted returns
    run up to the number of trials (100); per trial left they stay within one trial's range at every
    trial ([0, 1] for bandit rewards, [-1, 0] for their regret signal), so one head of small weights
    fits them, and the value loss cannot swamp the policy's.

    With `episodes_per_task` = K > 1, episodes K*g .. K*g + K - 1 of the batch play one task: each
    episode's advantage becomes its own minus the mean of the K - 1 others' at the same trial. The
    others' play does not depend on this episode's actions, so no gradient is biased; what they share
    with it (how hard the task is, which the critic cannot see) cancels. The critic's target is
    unchanged.
    """
    scale = horizons(values.shape[0], gamma).to(values.dtype).unsqueeze(1) if value_scale else None
    v = values * scale if value_scale else values
    with torch.no_grad():
        adv = advantages(rewards, v, gamma, lam)
        target = adv + v
        if episodes_per_task > 1:
            adv = relative_to_task(adv, episodes_per_task)
    log_probs = F.log_softmax(logits, dim=-1)  # [T, B, A]
    chosen = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [T, B]
    policy = -(chosen * adv).sum(0).mean()
    error = (target - v) / scale if value_scale else target - v
    value = 0.5 * error.pow(2).sum(0).mean()
    entropy = -(log_probs.exp() * log_probs).sum(-1).sum(0).mean()
    return LossTerms(policy + beta_v * value - beta_e * entropy, policy, value, entropy)


def imitation_loss(logits: torch.Tensor, expert: torch.Tensor, critic: LossTerms, beta_v: float) -> LossTerms:
    """The policy's cross-entropy to the expert's action probabilities expert [T, B, A], summed over
    trials and averaged over episodes, plus beta_v times the critic's loss `critic.value` (from
    a2c_loss, so the value head keeps learning). The policy term is the cross-entropy."""
    log_probs = F.log_softmax(logits, dim=-1)
    cross_entropy = -(expert * log_probs).sum(-1).sum(0).mean()
    entropy = -(log_probs.exp() * log_probs).sum(-1).sum(0).mean()
    return LossTerms(cross_entropy + beta_v * critic.value, cross_entropy, critic.value, entropy.detach())
