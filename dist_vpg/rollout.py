"""Roll out a batch of episodes and return what the A2C loss needs, with gradients attached.

`native` (dist_vpg/native) plays the whole batch in one C call and keeps what the backward needs, so
nothing is replayed. `onepass` builds the gradient graph while acting, one LSTM cell step per trial.
`twopass` acts under inference mode (no graph), then replays the recorded inputs through nn.LSTM's
fused kernel. All three give the same gradients (tests/test_rollout.py, tests/test_native.py);
onepass and twopass are the torch references, and twopass the fallback where native cannot build.
`rollout_loss` is what training calls: a batch and its loss, which on the native path is computed
in C as well (heads, loss and the whole gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from dist_vpg import distributed, native
from dist_vpg.agent import Agent
from dist_vpg.losses import LossTerms, a2c_loss, imitation_loss, training_signal
from dist_vpg.noise import Noise
from dist_vpg.tasks import Task


class Rollout(NamedTuple):
    inputs: torch.Tensor  # [T, B, I] what the agent saw on each trial
    actions: torch.Tensor  # [T, B] long
    rewards: torch.Tensor  # [T, B]
    regrets: torch.Tensor  # [T, B] expected regret of each choice
    logits: torch.Tensor | None  # [T, B, A]
    values: torch.Tensor | None  # [T, B]


def input_size(task: Task, trial_input: bool) -> int:
    """Observation, one-hot previous action, previous reward, and the trial index if fed."""
    return task.obs_size + task.num_actions + 1 + int(trial_input)


def sample_actions(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: probs [B, A], u [B] uniform -> actions [B] long. The action is a pure
    function of u, so the noise alone fixes it."""
    return (u.unsqueeze(1) > probs.cumsum(dim=1)[:, :-1]).sum(dim=1)


def act(agent: Agent, task: Task, noise: Noise, trial_input: bool, with_values: bool = True) -> Rollout:
    """Play T trials of B episodes in lockstep. Under grad mode, logits and values carry the graph."""
    trials, batch = noise.action.shape
    # Per-trial slices taken once: this loop runs T times per rollout, and every torch call in it
    # costs microseconds of dispatch whatever the batch size.
    action_noise, trial_noise = noise.action.unbind(0), noise.trial.unbind(0)
    trial_index = (torch.arange(trials, dtype=torch.float32) / trials).view(trials, 1, 1).expand(-1, batch, 1)
    trial_columns = trial_index.unbind(0) if trial_input else None
    one_hot = torch.eye(task.num_actions)
    policy_w, policy_b = agent.policy.weight, agent.policy.bias

    # The first trial shows the task's first observation (zeros but for Harlow's objects), and no
    # previous action or reward.
    task_state = task.reset(noise.episode)
    x = torch.cat(
        [task.first_obs(task_state), torch.zeros(batch, input_size(task, trial_input) - task.obs_size)], 1
    )
    inputs, hs, logits, actions, rewards, regrets = [], [], [], [], [], []
    lstm_state = agent.initial_state(batch)
    for t in range(trials):
        # A fresh x every trial rather than rows of one buffer written in place: autograd keeps
        # each x for the backward pass, and views of one buffer share a version counter.
        inputs.append(x)
        lstm_state = agent.step(x, lstm_state)
        if with_values:
            hs.append(lstm_state.h)
        logits.append(F.linear(lstm_state.h, policy_w, policy_b))
        action = sample_actions(F.softmax(logits[-1].detach(), dim=-1), action_noise[t])
        step = task.step(task_state, action, trial_noise[t])
        task_state = step.state
        actions.append(action)
        rewards.append(step.reward)
        regrets.append(step.regret)
        if t + 1 < trials:
            prev = [step.obs, one_hot[action], agent.reward_scale * step.reward.unsqueeze(1)]
            x = torch.cat(prev + [trial_columns[t + 1]] if trial_input else prev, dim=1)
    values = agent.value(torch.stack(hs)).squeeze(-1) if with_values else None  # [T, B]
    return Rollout(
        torch.stack(inputs),
        torch.stack(actions),
        torch.stack(rewards),
        torch.stack(regrets),
        torch.stack(logits),
        values,
    )


def usable_mode(mode: str, task: Task, cell: str = "lstm") -> tuple[str, str | None]:
    """The mode this process can run, and a warning when it is not the one asked for: `native`
    falls back to `twopass` for a task without a native step, an agent whose cell has no native
    kernel, or where the native library cannot be built or loaded."""
    reason = native.available(task, cell) if mode == "native" else None
    if reason is None:
        return mode, None
    if native.available() is None:  # the library runs here: the task or the cell has no native step
        return "twopass", (
            f"train.rollout=native: {reason}; training goes on with twopass (the same gradients, on "
            "the torch path). Set train.rollout=twopass to silence this"
        )
    return "twopass", (
        f"train.rollout=native is unavailable: {reason}; training goes on with twopass (the same "
        "gradients, about 2x slower). Install a C compiler (gcc) for native, or set "
        "train.rollout=twopass to silence this"
    )


def rollout(
    agent: Agent,
    task: Task,
    noise: Noise,
    mode: str,
    trial_input: bool,
    replay: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> Rollout:
    """One batch of episodes with gradients attached. `replay` is the module the twopass replay
    goes through (a DDP wrapper, say); by default the agent itself."""
    if mode == "onepass":
        return act(agent, task, noise, trial_input)
    if mode == "native":
        played = native.act(agent, task, noise, trial_input)
        logits, values = (replay or agent)(played.inputs, played)
        return Rollout(played.inputs, played.actions, played.rewards, played.regrets, logits, values)
    if mode != "twopass":
        raise ValueError(f"unknown rollout mode {mode!r}")
    with torch.inference_mode():
        played = act(agent, task, noise, trial_input, with_values=False)
    # Tensors made under inference mode cannot be saved for backward: leave it with copies.
    inputs, actions, rewards, regrets = (x.clone() for x in played[:4])
    logits, values = (replay or agent)(inputs)
    return Rollout(inputs, actions, rewards, regrets, logits, values)


def make_agent(
    task: Task,
    trial_input: bool,
    hidden: int,
    privileged_critic: bool = False,
    cell: str = "lstm",
    reward_scale: float = 1.0,
) -> Agent:
    """The agent for `task` (agent.* settings): with a privileged critic, one that also takes the
    task's privileged features and the trial index."""
    extra = task.privileged_size + 1 if privileged_critic else 0
    return Agent(
        input_size(task, trial_input), task.num_actions, hidden, extra, cell=cell, reward_scale=reward_scale
    )


def agent_for(cfg, task: Task) -> Agent:
    """The agent a configuration (its agent.* and task.trial_input) describes for `task`."""
    a = cfg.agent
    return make_agent(task, cfg.task.trial_input, a.hidden, a.privileged_critic, a.cell, a.reward_scale)


def privileged_features(task: Task, noise: Noise) -> torch.Tensor:
    """[T, B, P + 1]: what the task's privileged critic sees at each trial, its hidden parameters
    (TaskUnit.privileged) and the trial index t / T."""
    trials, batch = noise.action.shape
    hidden = task.privileged(task.reset(noise.episode)).float()  # [B, P]
    index = (torch.arange(trials, dtype=torch.float32) / trials).view(trials, 1, 1).expand(-1, batch, 1)
    return torch.cat([hidden.unsqueeze(0).expand(trials, -1, -1), index], 2)


def features(agent: Agent, task: Task, noise: Noise) -> torch.Tensor | None:
    """The privileged critic's features, or None for a plain critic."""
    return privileged_features(task, noise) if agent.privileged is not None else None


def rollout_loss(
    agent: Agent,
    task: Task,
    noise: Noise,
    mode: str,
    trial_input: bool,
    signal: str,
    loss_args: dict,
    replay: Callable | None = None,
) -> tuple[Rollout, LossTerms]:
    """One batch of episodes and its A2C loss: dist_vpg.losses.a2c_loss with `loss_args`, learning
    from `signal` (training_signal). On the native path the heads, the loss and the whole gradient
    are computed in C (dist_vpg.native.a2c_loss: the same terms and gradients) and the rollout
    carries no logits or values; `replay` is the module that call goes through (a DDP wrapper, say).
    An agent with a privileged critic has its values computed in torch on every path. `imitation`
    teaches the task's expert (TaskUnit.expert) on these episodes, the critic learning the regret."""
    if mode == "native" and signal != "imitation" and agent.privileged is None:
        played = native.act(agent, task, noise, trial_input)
        target = training_signal(played.rewards, played.regrets, signal)
        loss = (replay or agent)(played.inputs, played, loss_args | {"signal": target})
        return Rollout(played.inputs, played.actions, played.rewards, played.regrets, None, None), loss
    batch = rollout(agent, task, noise, mode, trial_input, replay)
    batch = batch._replace(values=agent.critic(batch.values, features(agent, task, noise)))
    if signal == "imitation":
        critic = a2c_loss(batch.logits, batch.values, batch.actions, -batch.regrets, **loss_args)
        expert = task.expert(task.reset(noise.episode), batch.actions, batch.rewards)
        return batch, imitation_loss(batch.logits, expert, critic, loss_args["beta_v"])
    target = training_signal(batch.rewards, batch.regrets, signal)
    return batch, a2c_loss(batch.logits, batch.values, batch.actions, target, **loss_args)


def fusable(agent: Agent, mode: str, signal: str) -> bool:
    """Whether native.Update's one call can take a rollout of `agent` in `mode` learning from
    `signal`: the native path, a plain critic and a signal it computes (not imitation)."""
    return mode == "native" and signal in native.Update.SIGNALS and agent.privileged is None


def agreed_mode(asked: str, task, world: distributed.World, say, cell: str = "lstm") -> str:
    """The rollout mode every rank runs: native only if every rank can, else twopass on all (the
    same gradients; mixing the two would break N ranks reproducing 1 by float rounding). Rank 0
    says why once."""
    mode, warning = usable_mode(asked, task, cell)
    warnings = [None] * world.world_size
    torch.distributed.all_gather_object(warnings, warning)
    found = [w for w in warnings if w]
    if found:
        say(
            f"dist_vpg: warning: {found[0]}"
            + (f" (on {len(found)} of {world.world_size} ranks)" if world.world_size > 1 else "")
        )
        return "twopass"
    return mode
