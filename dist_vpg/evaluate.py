"""Evaluate a trained agent with frozen weights on fresh episodes, beside the baselines.

    python -m dist_vpg.evaluate --checkpoint PATH [--episodes N] [--seed S] [--split eval|valid]
                                [--out DIR] [task.key=value]
    torchrun --nproc_per_node 2 -m dist_vpg.evaluate --checkpoint PATH ...   (episodes split over ranks)

Evaluation episodes come from their own noise split (dist_vpg.noise.EVAL), so no evaluation episode
is ever a training episode, whatever the seeds. `--split valid` plays the validation split instead:
the episodes to compare settings on, so that the evaluation split stays unseen until the settings are
chosen (the periodic evaluation during training uses it with the run's seed). Episodes are played in
chunks handed to the ranks in turn, so the figures are the same for any number of ranks. With --out,
DIR gets metrics.json, per_trial.csv and PNG plots. task.key=value overrides play the agent on
another task variant, say a dependent-bandit agent on task.distribution=hard.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psutil
import torch

from dist_vpg import (
    baselines,
    bayes,
    checkpoint,
    cli,
    config,
    distributed,
    files,
    native,
    noise,
    plots,
    restless,
    stay,
)
from dist_vpg.agent import Agent
from dist_vpg.noise import Noise
from dist_vpg.rollout import act, input_size
from dist_vpg.tasks import Harlow, InformativeArms, RestlessBandit, Task, TwoStep, make_task
from dist_vpg.tasks.informative import TARGET_PAYS

CHUNK = 250  # episodes played per call; chunk c goes to rank c % world_size
SPLITS = {"eval": noise.EVAL, "valid": noise.VALID}  # --split


class Played(NamedTuple):
    regrets: torch.Tensor  # [T, b] expected regret of each choice
    rewards: torch.Tensor  # [T, b]
    actions: torch.Tensor  # [T, b]
    common: torch.Tensor | None  # [T - 1, b] two-step: whether trial t's transition was the common one


class EvalResult(NamedTuple):
    regrets: np.ndarray  # [T, N]
    rewards: np.ndarray  # [T, N]
    actions: np.ndarray  # [T, N]
    common: np.ndarray | None  # [T - 1, N]
    gap: np.ndarray | None  # [N] bandits: arm 0's probability minus arm 1's

    @property
    def episodes(self) -> int:
        return self.regrets.shape[1]

    @property
    def regret(self) -> np.ndarray:
        """[N] expected regret summed over each episode."""
        return self.regrets.sum(0)

    @property
    def regret_by_trial(self) -> np.ndarray:
        """[T] mean cumulative expected regret after each trial."""
        return self.regrets.cumsum(0).mean(1)

    def by_trial(self) -> dict[str, np.ndarray]:
        """Per-trial curves: cumulative regret, P(best choice), reward."""
        return {
            "regret": self.regret_by_trial,
            "p_best": (self.regrets <= 1e-9).mean(1),
            "reward": self.rewards.mean(1),
        }

    def metrics(self) -> dict:
        n, reward = self.episodes, self.rewards.sum(0)
        sem = (lambda x: float(x.std(ddof=1) / np.sqrt(n))) if n > 1 else (lambda x: float("nan"))
        return {
            "episodes": n,
            "regret_at_end": float(self.regret.mean()),
            "regret_sem": sem(self.regret),
            "regret_std": float(self.regret.std(ddof=1)) if n > 1 else float("nan"),
            "reward_per_episode": float(reward.mean()),
            "reward_sem": sem(reward),
            "p_best_last_trial": float(self.by_trial()["p_best"][-1]),
        }


def evaluate(
    play: Callable[[Noise, int], Played],
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
        probs = getattr(task.reset(draws.episode), "probs", None)
        gap = None if probs is None else probs[:, 0] - probs[:, 1]
        mine.append((start, [None if x is None else x.numpy() for x in (*played, gap)]))
    if world.world_size > 1:
        gathered = [None] * world.world_size
        torch.distributed.all_gather_object(gathered, mine)
        mine = [chunk for part in gathered for chunk in part]
    chunks = [fields for _, fields in sorted(mine, key=lambda chunk: chunk[0])]
    # every field has the episodes on its last axis: join the chunks there, in episode order
    return EvalResult(
        *(None if f[0] is None else np.concatenate(f, axis=f[0].ndim - 1) for f in zip(*chunks))
    )


def agent_player(agent: Agent, task: Task, trial_input: bool) -> Callable[[Noise, int], Played]:
    """The agent with frozen weights, acting natively where it can (dist_vpg.native), else in torch."""
    fast = native.available(task) is None

    @torch.inference_mode()
    def play(draws: Noise, _: int) -> Played:
        if fast:
            r = native.act(agent, task, draws, trial_input, for_backward=False)
        else:
            r = act(agent, task, draws, trial_input, with_values=False)
        common = None
        if isinstance(task, TwoStep):  # the state reached on trial t is trial t + 1's observation
            reached = r.inputs[1:, :, : task.obs_size].argmax(-1)
            common = reached == r.actions[:-1]
        return Played(r.regrets, r.rewards, r.actions.to(torch.int8), common)

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
    """Each baseline on the very episodes the agent plays with the same seed. Bandits: random, UCB1,
    Thompson, Bayes-optimal and, given the agent's (gamma, beta_e), the best policy of that
    objective. Two-step: the Bayes-optimal player, where it is known. Informative arms and restless
    bandits, Harlow: their own players (INFORMATIVE_PLAYERS, dist_vpg.restless.PLAYERS, HARLOW_PLAYERS)."""
    if isinstance(task, Harlow):
        return {
            name: evaluate(harlow_player(task, name), task, episodes, seed, split, world)
            for name in HARLOW_PLAYERS
        }
    if isinstance(task, RestlessBandit):
        return {
            name: evaluate(restless_player(task, name), task, episodes, seed, split, world)
            for name in restless.PLAYERS
        }
    if isinstance(task, InformativeArms):
        return {
            name: evaluate(informative_player(task, name), task, episodes, seed, split, world)
            for name in INFORMATIVE_PLAYERS
        }
    if isinstance(task, TwoStep):
        if not bayes.TwoStepBayes.applies(task):
            return {}
        return {"bayes_optimal": evaluate(two_step_bayes_player(task), task, episodes, seed, split, world)}

    def player(policy):
        def play(draws: Noise, chunk_seed: int) -> Played:
            regrets, rewards, actions = baselines.play(policy, task, draws, chunk_seed)
            return Played(regrets, rewards, actions.to(torch.int8), None)

        return play

    return {
        name: evaluate(player(policy), task, episodes, seed, split, world)
        for name, policy in baselines.for_task(task, objective).items()
    }


def two_step_bayes_player(task: TwoStep) -> Callable[[Noise, int], Played]:
    """The Bayes-optimal two-step player on the agent's episodes; its ties (only on the first trial)
    are broken by the agent's own action noise."""
    player = bayes.TwoStepBayes(task)

    def play(draws: Noise, _: int) -> Played:
        state = task.reset(draws.episode)
        belief = torch.full((draws.action.shape[1],), 0.5, dtype=torch.float64)
        regrets, rewards, actions, common = [], [], [], []
        for t in range(task.trials):
            action = player.act(belief, draws.action[t])
            step = task.step(state, action, draws.trial[t])
            state, reached = step.state, step.obs.argmax(1)
            belief = player.update(belief, reached, step.reward)
            regrets.append(step.regret)
            rewards.append(step.reward)
            actions.append(action.to(torch.int8))
            common.append(reached == action)
        return Played(
            torch.stack(regrets), torch.stack(rewards), torch.stack(actions), torch.stack(common[:-1])
        )

    return play


# Informative arms: `optimal` pulls the informative arm, then the target it points to. `thompson`
# and `ucb` know the prior (the target is one of the ordinary arms, each as likely) but not what the
# informative arm means: Thompson pulls an ordinary arm drawn from those not yet ruled out, UCB the
# first of them (every one of them may pay 5, more than any other arm's upper bound), so both search
# and never pull the informative arm. `random` pulls any arm.
INFORMATIVE_PLAYERS = ("optimal", "thompson", "ucb", "random")


def informative_player(task: InformativeArms, name: str) -> Callable[[Noise, int], Played]:
    def play(draws: Noise, _: int) -> Played:
        state = task.reset(draws.episode)
        batch, ordinary = draws.action.shape[1], task.ordinary
        left = torch.ones(batch, ordinary, dtype=torch.bool)  # ordinary arms not yet ruled out
        found = torch.full((batch,), -1, dtype=torch.long)  # the target, once known
        regrets, rewards, actions = [], [], []
        for t in range(task.trials):
            u = draws.action[t]
            if name == "random":
                action = (u * task.num_actions).long().clamp(max=task.num_actions - 1)
            elif name == "optimal" and t == 0:
                action = torch.full((batch,), ordinary, dtype=torch.long)
            else:
                if name == "thompson":  # the k-th arm still left, k uniform
                    k = (u * left.sum(1)).long()
                    pick = (left.cumsum(1) > k.unsqueeze(1)).float().argmax(1)
                else:  # ucb: the first arm still left (optimal: only the target is)
                    pick = left.float().argmax(1)
                action = torch.where(found >= 0, found, pick)
            step = task.step(state, action, draws.trial[t])
            if name == "optimal" and t == 0:  # the informative arm pays scale * (target + 1) / ordinary
                found = (step.reward / task.scale * ordinary).round().long() - 1
            else:
                ordinary_pull = action < ordinary
                hit = ordinary_pull & (step.reward == TARGET_PAYS)
                found = torch.where(hit, action, found)
                rows = torch.arange(batch)[ordinary_pull]
                left[rows, action[ordinary_pull]] = False
            regrets.append(step.regret)
            rewards.append(step.reward)
            actions.append(action.to(torch.int8))
        return Played(torch.stack(regrets), torch.stack(rewards), torch.stack(actions), None)

    return play


# Harlow: `optimal` guesses a side on trial 1 and then chooses the object that paid (or the other one,
# if the guess did not pay) wherever it stands. `by_side` learns sides instead of objects: it keeps
# the side that paid and leaves the one that did not (win-stay, lose-shift), right half the time
# after trial 1 as the objects swap sides at random. `random` guesses every trial. On fixation steps
# (task.fixation) every player's action is 0, which the task ignores.
HARLOW_PLAYERS = ("optimal", "by_side", "random")


def harlow_player(task: Harlow, name: str) -> Callable[[Noise, int], Played]:
    def play(draws: Noise, _: int) -> Played:
        state = task.reset(draws.episode)
        regrets, rewards, actions = [], [], []
        action = last_reward = None  # at the previous choice
        for t in range(task.trials):
            if not state.choosing:
                chosen = torch.zeros(draws.action.shape[1], dtype=torch.long)
            elif last_reward is None or name == "random":
                chosen = (draws.action[t] >= 0.5).long()
            elif name == "optimal":  # the rewarded object's side: known from trial 1's outcome
                chosen = (~state.left).long()  # (read off the state, where it is the same)
            else:  # by_side: stay after a reward, shift after none
                chosen = torch.where(last_reward > 0, action, 1 - action)
            choosing = state.choosing
            step = task.step(state, chosen, draws.trial[t])
            state = step.state
            if choosing:
                action, last_reward = chosen, step.reward
            regrets.append(step.regret)
            rewards.append(step.reward)
            actions.append(chosen.to(torch.int8))
        return Played(torch.stack(regrets), torch.stack(rewards), torch.stack(actions), None)

    return play


def harlow_report(results: dict[str, EvalResult], task: Harlow, seed: int, split: int) -> dict:
    """By trial (choices only), each player's chance of choosing the rewarded object when it stands
    on the side it stood on in trial 1 and when it has swapped: a learner of objects is right on
    both, a learner of sides not."""
    episodes = next(iter(results.values())).episodes
    draws = noise.draw(seed, split, 0, np.arange(episodes), task.trials, task.episode_draws, task.trial_draws)
    left = task.rewarded_left(draws.episode, draws.trial).numpy()  # [choices, N]
    same = left == left[0]
    steps = task.choice_steps

    def right(r: EvalResult, where: np.ndarray) -> list:
        paid = r.rewards[steps]  # [choices, N]
        return [float(paid[k][where[k]].mean()) if where[k].any() else None for k in range(len(steps))]

    return {
        "p_correct_by_side": {
            name: {"same_side": right(r, same), "swapped": right(r, ~same)} for name, r in results.items()
        }
    }


def restless_player(task: RestlessBandit, name: str) -> Callable[[Noise, int], Played]:
    play = restless.player(task, name)

    def played(draws: Noise, _: int) -> Played:
        regrets, rewards, actions = play(draws)
        return Played(regrets, rewards, actions.to(torch.int8), None)

    return played


def restless_report(results: dict[str, EvalResult], task: RestlessBandit, seed: int, split: int) -> dict:
    """Each player's regret in stable and volatile episodes, and the Rescorla-Wagner learning rates
    fitted to its choices per block of episodes (not the random player's: its choices follow no q)."""
    volatile = restless.volatile_episodes(task, next(iter(results.values())).episodes, seed, split)
    return {
        "regret_by_volatility": {
            name: {"low": float(r.regret[~volatile].mean()), "high": float(r.regret[volatile].mean())}
            for name, r in results.items()
        },
        "learning_rates": {
            name: restless.learning_rates(r.actions, r.rewards, volatile)
            for name, r in results.items()
            if name != "random"
        },
        "rw_player_alphas": restless.tuned_alphas(task),
    }


def training_objective(cfg: config.Config) -> tuple[float, float]:
    """(gamma, beta_e) the agent was trained for last: its final discount and entropy coefficient."""
    tr = cfg.train
    final = lambda start, end: float(end if end >= 0 else start)
    return final(tr.gamma, tr.gamma_final), final(tr.beta_e, tr.beta_e_final)


def load_agent(path: Path, overrides: list[str] | tuple = ()) -> tuple[Agent, config.Config]:
    """The agent of a checkpoint, in eval mode, with its config (task.* overrides applied)."""
    state = checkpoint.load(path)
    cfg = config.from_checkpoint(state["config"], overrides)
    task = make_task(cfg.task)
    agent = Agent(input_size(task, cfg.task.trial_input), task.num_actions, cfg.agent.hidden)
    try:
        agent.load_state_dict(state["model"])
    except RuntimeError as e:
        raise checkpoint.CheckpointError(f"{path}: weights do not fit this task and model ({e})") from None
    agent.eval()
    return agent, cfg


def report(agent: EvalResult, others: dict[str, EvalResult]) -> dict:
    """metrics.json's figures: the agent's, each baseline's, and the two-step analysis."""
    metrics = {"agent": agent.metrics()}
    if others:
        metrics["baselines"] = {name: r.metrics() for name, r in others.items()}
    if agent.common is not None:
        metrics["stay_probabilities"] = stay.stay_probabilities(agent.actions, agent.rewards, agent.common)
        metrics["paper_stay_probabilities"] = stay.PAPER
        metrics["model_based_index"] = stay.model_based_index(agent.actions, agent.rewards, agent.common)
        for name, r in others.items():
            if r.common is not None:
                metrics["baselines"][name]["stay_probabilities"] = stay.stay_probabilities(
                    r.actions, r.rewards, r.common
                )
    return metrics


def informative_pulls(result: EvalResult, task: InformativeArms) -> dict[str, list[float]]:
    """By trial: the share of episodes that pulled the informative arm, and the target."""
    return {
        "informative": (result.actions == task.ordinary).mean(1).tolist(),
        "target": result.by_trial()["p_best"].tolist(),  # the target is the best choice
    }


def write_outputs(out: Path, metrics: dict, results: dict[str, EvalResult]) -> None:
    """metrics.json, per_trial.csv (one row per trial, columns player_curve) and the plots."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    curves = {name: r.by_trial() for name, r in results.items()}
    with open(out / "per_trial.csv", "w", newline="") as f:
        writer = csv.writer(f)
        columns = [(name, key) for name, c in curves.items() for key in c]
        writer.writerow(["trial"] + [f"{name}_{key}" for name, key in columns])
        trials = len(next(iter(curves.values()))["regret"])
        for t in range(trials):
            writer.writerow([t + 1] + [f"{curves[name][key][t]:.6g}" for name, key in columns])
    plots.curves(
        {n: c["regret"] for n, c in curves.items()}, "cumulative expected regret", out / "regret.png"
    )
    plots.curves({n: c["p_best"] for n, c in curves.items()}, "P(best choice)", out / "p_best.png")
    agent = results["agent"]
    plots.sorted_raster(agent.actions, agent.rewards, agent.gap, out / "raster.png")
    if "pull_pattern" in metrics:
        plots.pull_pattern(metrics["pull_pattern"], out / "pulls.png")
    if "learning_rates" in metrics:
        plots.learning_rates(metrics["learning_rates"], out / "learning_rates.png")
    if "p_correct_by_side" in metrics:
        plots.harlow_sides(metrics["p_correct_by_side"], out / "harlow.png")
    if "stay_probabilities" in metrics:
        patterns = {"agent (95% CI)": metrics["stay_probabilities"]}
        for name, m in metrics.get("baselines", {}).items():
            if "stay_probabilities" in m:
                patterns[name.replace("_", "-")] = m["stay_probabilities"]
        plots.stay_bars(patterns, metrics["paper_stay_probabilities"], out / "stay.png")


# Bytes of results an episode's trial leaves on every rank (gathered there): regret, reward, action
# and transition of the agent and of up to six baselines, with room for the tables made from them.
RESULT_BYTES_PER_TRIAL = 7 * 10 * 2


def memory_problem(episodes: int, trials: int) -> str | None:
    """Why --episodes would not fit in memory, or None."""
    need, available = episodes * trials * RESULT_BYTES_PER_TRIAL, psutil.virtual_memory().available
    if need <= available:
        return None
    return (
        f"--episodes {episodes}: their results need about {need / 2**30:.1f} GiB, but "
        f"{available / 2**30:.1f} GiB is available; evaluate fewer episodes"
    )


def out_problem(out: Path | None) -> str | None:
    """Why --out cannot take the outputs, or None."""
    try:
        if out is not None:
            files.writable_dir(out, "--out")
    except config.ConfigError as e:
        return str(e)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser("dist_vpg.evaluate", __doc__)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--episodes", type=cli.at_least(2), default=2000)
    parser.add_argument("--seed", type=cli.seed, default=12345)
    parser.add_argument(
        "--split", choices=sorted(SPLITS), default="eval", help="valid: the episodes to choose settings on"
    )
    parser.add_argument("--out", type=Path, help="directory for metrics.json, per_trial.csv and plots")
    parser.add_argument("overrides", nargs="*", metavar="task.key=value", help="play another task variant")
    args = parser.parse_intermixed_args(argv)
    if any(not o.startswith("task.") for o in args.overrides):
        parser.error("only task.* keys can be overridden at evaluation")
    world = distributed.world_from_env()
    try:
        agent, cfg = load_agent(args.checkpoint, args.overrides)
    except (checkpoint.CheckpointError, config.ConfigError) as e:
        return cli.refuse(parser.name, str(e))
    task = make_task(cfg.task)
    distributed.init(world, timeout_s=600)
    try:
        # Rank 0 alone writes --out: it proves it can before any episode is played, and tells all.
        problem = (
            memory_problem(args.episodes, task.trials) or out_problem(args.out) if world.is_main else None
        )
        problem = distributed.broadcast_object(problem)
        if problem:
            return cli.refuse(parser.name, problem)
        split = SPLITS[args.split]
        result = evaluate_agent(agent, task, cfg.task.trial_input, args.episodes, args.seed, split, world)
        objective = training_objective(cfg)
        others = evaluate_baselines(task, args.episodes, args.seed, world, objective, split)
    finally:
        distributed.shutdown()
    if not world.is_main:
        return 0
    metrics = {
        "checkpoint": str(args.checkpoint),
        "task": config.to_dict(cfg)["task"],
        "seed": args.seed,
        "split": args.split,
        "episodes": args.episodes,
        "ranks": world.world_size,
        "training_objective": {"gamma": objective[0], "beta_e": objective[1]},
        **report(result, others),
    }
    if cfg.task.name == "bandit":
        metrics["exact_regret_at_end"] = baselines.exact_regrets(task, objective)
    if isinstance(task, InformativeArms):
        players = {"agent": result, **others}
        metrics["pull_pattern"] = {name: informative_pulls(r, task) for name, r in players.items()}
    if isinstance(task, RestlessBandit):
        metrics.update(restless_report({"agent": result, **others}, task, args.seed, SPLITS[args.split]))
    if isinstance(task, Harlow):
        metrics.update(harlow_report({"agent": result, **others}, task, args.seed, SPLITS[args.split]))
    print(json.dumps(metrics, indent=2))
    if args.out:
        write_outputs(args.out, metrics, {"agent": result, **others})
        print(f"dist_vpg.evaluate: metrics.json, per_trial.csv and plots in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
