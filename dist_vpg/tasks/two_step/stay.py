"""The two-step task's behavioural signature: how often the agent repeats its first-stage choice after
each kind of trial, and a logistic regression of staying on reward, transition and their interaction.

A model-free learner repeats whatever was rewarded. A model-based one knows that a reward reached
through a rare transition argues for the other action, so it stays after rewarded-common and
unrewarded-rare trials and switches after the other two: the reward x transition interaction (the
model-based index) is positive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dist_vpg.plots import saved_figure

KINDS = ("rewarded_common", "rewarded_rare", "unrewarded_common", "unrewarded_rare")
PAPER = {"rewarded_common": 0.99, "rewarded_rare": 0.63, "unrewarded_common": 0.62, "unrewarded_rare": 0.99}


def transitions(actions: np.ndarray, rewards: np.ndarray, common: np.ndarray):
    """Per consecutive pair of trials, each [T - 1, N]: rewarded, common, stayed.

    actions, rewards: [T, N]; common: [T - 1, N], whether trial t's transition was the common one
    (the last trial's is never seen by anyone and is not needed)."""
    stayed = actions[1:] == actions[:-1]
    return rewards[:-1] > 0, common.astype(bool), stayed


def stay_probabilities(actions: np.ndarray, rewards: np.ndarray, common: np.ndarray) -> dict:
    """P(stay) after each kind of trial, as the mean over episodes of each episode's own rate, with
    the standard error over episodes (episodes are independent; trials within one are not)."""
    rewarded, common, stayed = transitions(actions, rewards, common)
    out = {}
    for kind in KINDS:
        mask = (rewarded == kind.startswith("rewarded")) & (common == kind.endswith("common"))
        count = mask.sum(0)  # [N]
        seen = count > 0
        rate = (stayed & mask).sum(0)[seen] / count[seen]
        sem = rate.std(ddof=1) / np.sqrt(len(rate)) if len(rate) > 1 else float("nan")
        out[kind] = {"p": float(rate.mean()), "sem": float(sem), "episodes": int(seen.sum())}
    return out


def model_based_index(actions: np.ndarray, rewards: np.ndarray, common: np.ndarray) -> dict:
    """Logistic regression stay ~ 1 + reward + transition + reward:transition, each coded +1/-1
    (rewarded, common), fitted by Newton's method over every pair of trials. The interaction
    coefficient is the model-based index. Standard errors from the inverse Fisher information."""
    rewarded, common, stayed = transitions(actions, rewards, common)
    r = np.where(rewarded, 1.0, -1.0).ravel()
    c = np.where(common, 1.0, -1.0).ravel()
    x = np.stack([np.ones_like(r), r, c, r * c], axis=1)
    y = stayed.ravel().astype(np.float64)
    beta = np.zeros(4)
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(x @ beta, -30, 30)))
        fisher = x.T @ (x * (p * (1 - p))[:, None]) + 1e-9 * np.eye(4)
        delta = np.linalg.solve(fisher, x.T @ (y - p))
        beta += delta
        if np.abs(delta).max() < 1e-10:
            break
    se = np.sqrt(np.diag(np.linalg.inv(fisher)))
    names = ("intercept", "reward", "transition", "interaction")
    return {
        "index": float(beta[3]),
        "coefficients": {n: float(b) for n, b in zip(names, beta)},
        "se": {n: float(s) for n, s in zip(names, se)},
        "pairs": int(len(y)),
    }


def stay_bars(found: dict[str, dict], paper: dict, path: Path) -> Path:
    """Two-step stay probabilities by kind of previous trial, one bar group per kind: each player's
    (found: {label: {kind: {"p", "sem"}}}, with 95% error bars) and the paper's."""
    kinds = list(paper)
    x = np.arange(len(kinds))
    bars = len(found) + 1
    width = 0.8 / bars
    with saved_figure(path, figsize=(7, 4)) as (_, ax):
        for i, (label, pattern) in enumerate(found.items()):
            p = [pattern[k]["p"] for k in kinds]
            err = [1.96 * pattern[k]["sem"] for k in kinds]
            ax.bar(x + (i - (bars - 1) / 2) * width, p, width, yerr=err, capsize=3, label=label)
        ax.bar(
            x + (bars - 1) / 2 * width, [paper[k] for k in kinds], width, alpha=0.6, label="Wang et al. 2018"
        )
        ax.set_xticks(x, [k.replace("_", "\n") for k in kinds])
        ax.set(ylabel="P(same first-stage choice)", ylim=(0, 1.05))
        ax.legend(loc="upper center", fontsize=8)
    return path
