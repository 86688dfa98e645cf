"""The belief inside the agent: how well a linear read-out of its frozen LSTM state recovers the
Bayes posterior of its task, trial by trial.

The task says what its posterior is (TaskUnit.beliefs: on bandits each arm's posterior mean and its
pull count, on the two-step task the chance that each second-stage state is the good one), computed
from the agent's own history before each choice. The read-out is ridge regression from the LSTM's
state when it makes that choice (h and c) to the posterior, one per trial, fitted on half of the
episodes and scored on the other half: R^2 by trial of each kind of target, averaged over its
columns. The same read-out from an untrained agent of the same size is the floor: what the inputs
alone carry through random recurrent weights. An agent whose R^2 sits well above that floor holds
the posterior in its state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dist_vpg.agent import Agent
from dist_vpg.noise import Noise
from dist_vpg.plots import saved_figure
from dist_vpg.rollout import act

RIDGE = 1e-2  # the read-out's penalty, relative to the features' (standardized) scale
FLOOR_SEED = 20_160_517  # the untrained agent's weights: one fixed draw


@torch.inference_mode()
def states(agent: Agent, task, draws: Noise, trial_input: bool) -> tuple[np.ndarray, dict]:
    """The agent's state at each of its choices [T, B, F] (h, then an LSTM's c) on the episodes of
    `draws`, and the task's posterior before each choice ({kind: [T, B, k]})."""
    played = act(agent, task, draws, trial_input, with_values=False)
    state, found = agent.initial_state(played.inputs.shape[1]), []
    for x in played.inputs:  # the same inputs again, to keep the LSTM's cell as well as h
        state = agent.step(x, state)
        found.append(agent.state_features(state))
    beliefs = task.beliefs(task.reset(draws.episode), played.inputs, played.actions, played.rewards)
    return torch.stack(found).numpy(), {k: v.double().numpy() for k, v in beliefs.items()}


def ridge_r2(x: np.ndarray, y: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """R^2 by trial [T] of a linear read-out from x [T, N, F] to y [T, N, k], one per trial, fitted on
    the episodes `fit` ([N] bool) and scored on the others; each trial's R^2 is the mean over the k
    columns that vary at that trial (NaN where none does)."""
    return np.array([_ridge_r2(x[t, fit], y[t, fit], x[t, ~fit], y[t, ~fit]) for t in range(len(x))])


def _ridge_r2(x_fit, y_fit, x_score, y_score) -> float:
    x_fit, x_score = x_fit.astype(np.float64), x_score.astype(np.float64)
    mean, scale = x_fit.mean(0), x_fit.std(0) + 1e-8
    design = lambda a: np.concatenate([(a - mean) / scale, np.ones((len(a), 1))], 1)
    a = design(x_fit)
    penalty = RIDGE * len(a) * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0  # the intercept goes free
    weights = np.linalg.solve(a.T @ a + penalty, a.T @ y_fit)
    residual = ((y_score - design(x_score) @ weights) ** 2).sum(0)  # [k]
    total = ((y_score - y_score.mean(0)) ** 2).sum(0)
    varies = total > 1e-12
    return float((1.0 - residual[varies] / total[varies]).mean()) if varies.any() else float("nan")


def untrained_like(agent: Agent) -> Agent:
    """An agent of the same shape with fresh random weights (a fixed draw)."""
    torch.manual_seed(FLOOR_SEED)
    fresh = Agent(
        agent.input_size,
        agent.policy.out_features,
        agent.hidden,
        cell=agent.cell,
        reward_scale=agent.reward_scale,
    )
    return fresh.eval()


def decoding(agent: Agent, task, draws: Noise, trial_input: bool) -> dict | None:
    """metrics.json's belief_decoding for the agent and its untrained floor, or None where the task
    has no posterior to decode. Odd episodes fit the read-out, even ones score it."""
    x, beliefs = states(agent, task, draws, trial_input)
    if not beliefs:
        return None
    fit = np.arange(draws.action.shape[1]) % 2 == 1
    found = {"episodes_fit": int(fit.sum()), "episodes_scored": int((~fit).sum()), "ridge": RIDGE}
    found["agent"] = {kind: _listed(ridge_r2(x, y, fit)) for kind, y in beliefs.items()}
    rng_state = torch.get_rng_state()  # the floor's fixed draw leaves the caller's generator alone
    try:
        x, beliefs = states(untrained_like(agent), task, draws, trial_input)
    finally:
        torch.set_rng_state(rng_state)
    found["untrained"] = {kind: _listed(ridge_r2(x, y, fit)) for kind, y in beliefs.items()}
    return found


def _listed(r2: np.ndarray) -> list:
    return [None if np.isnan(v) else round(float(v), 6) for v in r2]


def figure(found: dict, path: Path) -> Path:
    """R^2 by trial of each kind of posterior, the agent's (solid) over the untrained floor (dashed)."""
    kinds = list(found["agent"])
    with saved_figure(path, ncols=len(kinds), figsize=(5 * len(kinds), 4), squeeze=False) as (_, axes):
        for ax, kind in zip(axes[0], kinds):
            for who, style in (("agent", {"lw": 2.5}), ("untrained", {"lw": 1.2, "ls": "--"})):
                y = np.array([np.nan if v is None else v for v in found[who][kind]], dtype=float)
                ax.plot(
                    np.arange(1, len(y) + 1), y, label=f"{who}" if who == "untrained" else "trained", **style
                )
            ax.set(xlabel="trial", ylabel="R^2 of a linear read-out (held-out episodes)", ylim=(-0.05, 1.02))
            ax.set_title(kind.replace("_", " "), fontsize=10)
            ax.grid(alpha=0.3)
        axes[0][0].legend()
    return path
