"""The evaluation engine: a frozen agent and its task's players on the same fresh episodes, in
chunks handed to the ranks in turn (the figures are the same for any number of ranks), and the report
of what they scored. Training's periodic validation, the sweep and dist_vpg.evaluate (the command)
all evaluate here.

Evaluation episodes come from their own noise split (dist_vpg.noise.EVAL), so no evaluation episode
is ever a training episode, whatever the seeds; the validation split (noise.VALID) is the one to
compare settings on, so that the evaluation split stays unseen until the settings are chosen.
"""

from __future__ import annotations

import numpy as np
import torch

from dist_vpg import belief, config, distributed, native, noise
from dist_vpg.agent import Agent
from dist_vpg.noise import Noise
from dist_vpg.results import EvalResult, Played, Player, paired_gap
from dist_vpg.rollout import act
from dist_vpg.tasks import Task

CHUNK = 250  # episodes played per call; chunk c goes to rank c % world_size
BELIEF_EPISODES = 2000  # the first episodes the belief read-out is fitted and scored on (rank 0)
SPLITS = {"eval": noise.EVAL, "valid": noise.VALID}  # --split


def evaluate(
    play: Player,
    task: Task,
    episodes: int,
    seed: int,
    split: int = noise.EVAL,
    world: distributed.World | None = None,
) -> EvalResult:
    """Run `play(noise, chunk_seed) -> Played` over `episodes` fresh episodes of `split`, this rank's
    share of the chunks; with several ranks every rank gets the whole result."""
    world = world or distributed.World()
    mine = []
    for start in range(world.rank * CHUNK, episodes, world.world_size * CHUNK):
        ids = np.arange(start, min(start + CHUNK, episodes))
        draws = noise.draw(seed, split, 0, ids, task.trials, task.episode_draws, task.trial_draws)
        played = play(draws, seed * 1_000_003 + start)
        extra = played.extra | task.episode_record(task.reset(draws.episode))
        fields = {"regrets": played.regrets, "rewards": played.rewards, "actions": played.actions}
        mine.append((start, {k: v.numpy() for k, v in (fields | extra).items()}))
    if world.world_size > 1:
        gathered = [None] * world.world_size
        torch.distributed.all_gather_object(gathered, mine)
        mine = [chunk for part in gathered for chunk in part]
    chunks = [fields for _, fields in sorted(mine, key=lambda chunk: chunk[0])]
    # every field has the episodes on its last axis: join the chunks there, in episode order
    joined = {k: np.concatenate([c[k] for c in chunks], axis=chunks[0][k].ndim - 1) for k in chunks[0]}
    return EvalResult(joined.pop("regrets"), joined.pop("rewards"), joined.pop("actions"), joined)


def agent_player(agent: Agent, task: Task, trial_input: bool) -> Player:
    """The agent with frozen weights, acting natively where it can (dist_vpg.native), else in torch."""
    fast = native.available(task, agent.cell) is None

    @torch.inference_mode()
    def play(draws: Noise, _: int) -> Played:
        if fast:
            r = native.act(agent, task, draws, trial_input, for_backward=False)
        else:
            r = act(agent, task, draws, trial_input, with_values=False)
        extra = task.agent_record(r.inputs, r.actions)
        return Played(r.regrets, r.rewards, r.actions.to(torch.int8), extra)

    return play


def evaluate_agent(
    agent: Agent,
    task: Task,
    trial_input: bool,
    episodes: int,
    seed: int,
    split: int = noise.EVAL,
    world: distributed.World | None = None,
) -> EvalResult:
    """The agent, weights frozen, on `episodes` fresh episodes."""
    return evaluate(agent_player(agent, task, trial_input), task, episodes, seed, split, world)


def evaluate_baselines(
    task: Task,
    episodes: int,
    seed: int,
    world: distributed.World | None = None,
    objective: tuple[float, float] | None = None,
    split: int = noise.EVAL,
) -> dict[str, EvalResult]:
    """Each of the task's players (TaskUnit.players) on the very episodes the agent plays with the
    same seed; `objective`, the agent's (gamma, beta_e), for the players that depend on it."""
    return {
        name: evaluate(player, task, episodes, seed, split, world)
        for name, player in task.players(objective).items()
    }


def training_objective(cfg: config.Config) -> tuple[float, float]:
    """(gamma, beta_e) the agent was trained for last: its final discount and entropy coefficient."""
    tr = cfg.train
    final = lambda start, end: float(end if end >= 0 else start)
    return final(tr.gamma, tr.gamma_final), final(tr.beta_e, tr.beta_e_final)


def report(
    task: Task,
    results: dict[str, EvalResult],
    seed: int,
    split: int,
    objective: tuple[float, float],
) -> dict:
    """metrics.json's figures: the agent's, each baseline's, and the task's own (TaskUnit.report)."""
    agent, others = results["agent"], {k: r for k, r in results.items() if k != "agent"}
    metrics = {"agent": agent.metrics()}
    if others:
        metrics["baselines"] = {name: r.metrics() for name, r in others.items()}
    if task.best_player in others:
        gap = paired_gap(agent.regret, others[task.best_player].regret)
        metrics["gap_to_best"] = {"player": task.best_player, "exact_optimum": task.best_is_optimal, **gap}
    return merged(metrics, task.report(results, seed, split, objective))


def belief_decoding(agent: Agent, task: Task, trial_input: bool, episodes: int, seed: int, split: int):
    """How well a linear read-out of the agent's state recovers its task's posterior, by trial,
    beside an untrained agent's (dist_vpg.belief), on the first `episodes` episodes; None where the
    task has no posterior to offer."""
    draws = noise.draw(seed, split, 0, np.arange(episodes), task.trials, task.episode_draws, task.trial_draws)
    return belief.decoding(agent, task, draws, trial_input)


def merged(base: dict, extra: dict) -> dict:
    """base with extra's keys added, mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = merged(out[key], value) if both else value
    return out
