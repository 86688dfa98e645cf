"""Evaluate a trained agent with frozen weights on fresh episodes.

    python -m dist_vpg.evaluate --checkpoint runs/X/checkpoint-00002000.pt [--episodes N] [--seed S]

Evaluation episodes come from their own noise split (dist_vpg.noise.EVAL), so no evaluation
episode is ever a training episode, whatever the seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from dist_vpg import baselines, checkpoint, config, noise
from dist_vpg.agent import Agent
from dist_vpg.noise import Noise
from dist_vpg.rollout import act, input_size
from dist_vpg.tasks import Task, make_task

CHUNK = 1000  # episodes played per call: bounds memory, not results


class EvalResult(NamedTuple):
    episodes: int
    regret: np.ndarray  # [episodes] expected regret summed over the episode
    reward: np.ndarray  # [episodes] reward summed over the episode
    regret_by_trial: np.ndarray  # [T] mean cumulative expected regret after each trial

    def metrics(self) -> dict:
        n = self.episodes
        return {
            "episodes": n,
            "regret_at_end": float(self.regret.mean()),
            "regret_sem": float(self.regret.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "regret_std": float(self.regret.std(ddof=1)) if n > 1 else float("nan"),
            "reward_per_episode": float(self.reward.mean()),
            "reward_sem": float(self.reward.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        }


def evaluate(
    play: Callable[[Noise, int], tuple[torch.Tensor, torch.Tensor]], task: Task, episodes: int, seed: int
) -> EvalResult:
    """Run `play(noise, chunk_seed) -> (regrets [T, b], rewards [T, b])` over `episodes` fresh
    evaluation episodes, CHUNK at a time."""
    regrets, rewards = [], []
    for start in range(0, episodes, CHUNK):
        ids = np.arange(start, min(start + CHUNK, episodes))
        draws = noise.draw(seed, noise.EVAL, 0, ids, task.trials, task.episode_draws, task.trial_draws)
        regret, reward = play(draws, seed * 1_000_003 + start)
        regrets.append(regret)
        rewards.append(reward)
    regret = torch.cat(regrets, dim=1)  # [T, N]
    reward = torch.cat(rewards, dim=1)
    return EvalResult(
        episodes, regret.sum(0).numpy(), reward.sum(0).numpy(), regret.cumsum(0).mean(1).numpy()
    )


@torch.inference_mode()
def evaluate_agent(agent: Agent, task: Task, trial_input: bool, episodes: int, seed: int) -> EvalResult:
    """The agent, weights frozen, on `episodes` fresh episodes."""

    def play(draws: Noise, _: int):
        played = act(agent, task, draws, trial_input, with_values=False)
        return played.regrets, played.rewards

    return evaluate(play, task, episodes, seed)


def evaluate_baselines(task: Task, episodes: int, seed: int) -> dict[str, EvalResult]:
    """Each classical bandit algorithm on the very episodes the agent plays with the same seed."""
    return {
        name: evaluate(lambda draws, s, p=policy: baselines.play(p, task, draws, s), task, episodes, seed)
        for name, policy in baselines.BASELINES.items()
    }


def load_agent(path: Path) -> tuple[Agent, config.Config]:
    state = checkpoint.load(path)
    cfg = config.from_dict(state["config"])
    task = make_task(cfg.task)
    agent = Agent(input_size(task, cfg.task.trial_input), task.num_actions, cfg.agent.hidden)
    try:
        agent.load_state_dict(state["model"])
    except RuntimeError as e:
        raise checkpoint.CheckpointError(f"{path}: weights do not fit its own config ({e})") from None
    agent.eval()
    return agent, cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dist_vpg.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", type=Path, help="directory for metrics.json")
    args = parser.parse_args(argv)
    if args.episodes < 2:
        parser.error("--episodes must be at least 2")
    try:
        agent, cfg = load_agent(args.checkpoint)
    except (checkpoint.CheckpointError, config.ConfigError) as e:
        print(f"dist_vpg.evaluate: {e}", file=sys.stderr)
        return 2
    task = make_task(cfg.task)
    result = evaluate_agent(agent, task, cfg.task.trial_input, args.episodes, args.seed)
    metrics = {
        "checkpoint": str(args.checkpoint),
        "task": config.to_dict(cfg)["task"],
        "seed": args.seed,
        **result.metrics(),
    }
    if cfg.task.name == "bandit":
        found = evaluate_baselines(task, args.episodes, args.seed)
        metrics["baselines"] = {name: r.metrics() for name, r in found.items()}
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
