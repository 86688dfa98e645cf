"""Evaluate a trained agent with frozen weights on fresh episodes, beside its task's players.

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
from pathlib import Path

import psutil

from dist_vpg import (
    belief,
    checkpoint,
    cli,
    config,
    distributed,
    files,
    memory,
    plots,
)
from dist_vpg.evaluation import (
    BELIEF_EPISODES,
    SPLITS,
    belief_decoding,
    evaluate_agent,
    evaluate_baselines,
    report,
    training_objective,
)
from dist_vpg.results import EvalResult
from dist_vpg.tasks import Task, make_task


def write_outputs(out: Path, metrics: dict, results: dict[str, EvalResult], task: Task) -> None:
    """metrics.json, per_trial.csv (one row per trial, columns player_curve), the plots every task
    has and the task's own (TaskUnit.figures)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    # The figures and per-trial rows count the task's choices (Harlow's fixation steps left out).
    shown = {name: r.at_steps(task.choice_steps) for name, r in results.items()}
    curves = {name: r.by_trial() for name, r in shown.items()}
    with open(out / "per_trial.csv", "w", newline="") as f:
        writer = csv.writer(f)
        columns = [(name, key) for name, c in curves.items() for key in c]
        writer.writerow(["trial"] + [f"{name}_{key}" for name, key in columns])
        trials = len(next(iter(curves.values()))["regret"])
        for t in range(trials):
            writer.writerow([t + 1] + [f"{curves[name][key][t]:.6g}" for name, key in columns])
    plots.regret_figure({n: r.regrets for n, r in shown.items()}, task.best_player, out / "regret.png")
    plots.curves({n: c["p_best"] for n, c in curves.items()}, "P(best choice)", out / "p_best.png")
    agent, (key, label) = shown["agent"], task.raster_sort or (None, "")
    plots.sorted_raster(task.raster_view(agent), agent.extra.get(key), label, out / "raster.png")
    task.figures(metrics, results, out)
    if "belief_decoding" in metrics:
        belief.figure(metrics["belief_decoding"], out / "belief_decoding.png")


def out_problem(out: Path | None) -> str | None:
    """Why --out cannot take the outputs, or None."""
    try:
        if out is not None:
            files.writable_dir(out, "--out")
    except config.ConfigError as e:
        return str(e)
    return None


def command_parser() -> cli.Parser:
    parser = cli.Parser("dist_vpg.evaluate", __doc__, epilog=config.settings_help(task_only=True))
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--episodes", type=cli.at_least(2), default=2000)
    parser.add_argument("--seed", type=cli.seed, default=12345)
    parser.add_argument(
        "--split", choices=sorted(SPLITS), default="eval", help="valid: the episodes to choose settings on"
    )
    parser.add_argument("--out", type=Path, help="directory for metrics.json, per_trial.csv and plots")
    parser.add_argument(
        "--weights",
        choices=checkpoint.WEIGHTS,
        default="auto",
        help="auto: the weights' average where the checkpoint holds one (train.average), else the weights",
    )
    parser.add_argument("--json", action="store_true", help="print metrics.json whole instead of the table")
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print the checkpoint's configuration (overrides applied), and exit",
    )
    parser.add_argument("overrides", nargs="*", metavar="task.key=value", help="play another task variant")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = command_parser()
    args = parser.parse_intermixed_args(argv)
    if any(not o.startswith("task.") for o in args.overrides):
        parser.error("only task.* keys can be overridden at evaluation")
    world = distributed.world_from_env()
    try:
        agent, cfg = checkpoint.load_agent(args.checkpoint, args.overrides, args.weights)
    except (checkpoint.CheckpointError, config.ConfigError) as e:
        return cli.refuse(parser.name, str(e))
    if args.show_config:
        print(config.to_yaml(cfg), end="")
        return 0
    task, split, objective = make_task(cfg.task), SPLITS[args.split], training_objective(cfg)
    distributed.init(world, timeout_s=600)
    try:
        # Rank 0 alone writes --out: it proves it can before any episode is played, and tells all.
        problem = (
            memory.evaluation_problem(args.episodes, task.trials, psutil.virtual_memory().available)
            or out_problem(args.out)
            if world.is_main
            else None
        )
        problem = distributed.broadcast_object(problem)
        if problem:
            return cli.refuse(parser.name, problem)
        result = evaluate_agent(agent, task, cfg.task.trial_input, args.episodes, args.seed, split, world)
        played = {
            "agent": result,
            **evaluate_baselines(task, args.episodes, args.seed, world, objective, split),
        }
    finally:
        distributed.shutdown()
    if not world.is_main:
        return 0
    metrics = command_metrics(args, cfg, agent, task, played, objective, world.world_size)
    print(json.dumps(metrics, indent=2) if args.json else "\n".join(table(metrics)))
    if args.out:
        write_outputs(args.out, metrics, played, task)
        where = sys.stderr if args.json else sys.stdout  # --json: stdout is metrics.json alone
        print(f"metrics.json, per_trial.csv and figures in {args.out}", file=where)
    return 0


def table(metrics: dict) -> list[str]:
    """What the command prints: the episodes, each player's regret and reward with standard errors
    (an exact expectation beside the sampled figure where the task has one), and the agent's gap to
    the task's best player on the same episodes."""
    exact = metrics.get("exact_regret_at_end", {})
    split = {"eval": "evaluation", "valid": "validation"}[metrics["split"]]
    lines = [
        f"{metrics['checkpoint']} ({metrics['weights']} weights): {metrics['episodes']} episodes of "
        f"{split} seed {metrics['seed']}",
        f"  {'player':<18} {'regret':>15} {'reward':>16}   {'P(best), last trial':>19}",
    ]
    for name, m in {"agent": metrics["agent"], **metrics.get("baselines", {})}.items():
        regret = f"{m['regret_at_end']:.3f} ± {m['regret_sem']:.3f}"
        reward = f"{m['reward_per_episode']:.2f} ± {m['reward_sem']:.2f}"
        note = f"   exact over all episodes: {exact[name]:.3f}" if name in exact else ""
        lines.append(f"  {name:<18} {regret:>15} {reward:>16}   {m['p_best_last_trial']:>19.3f}{note}")
    if exact:
        lines += [
            "  regret and reward: means over these episodes, summed over each; exact: the expected",
            "  regret over all the task's episodes, which the sampled figure nears as episodes grow",
        ]
    if "gap_to_best" in metrics:
        g, best = metrics["gap_to_best"], metrics["gap_to_best"]["player"]
        share = f" ({100 * g['gap'] / g['optimum']:+.1f}%)" if g["optimum"] > 0 else ""
        lines.append(
            f"agent above {best}{'' if g['exact_optimum'] else ' (the best player the task has)'} on "
            f"the same episodes, episode by episode: {g['gap']:+.3f} ± {g['gap_sem']:.3f}{share}"
        )
    return lines


def command_metrics(args, cfg: config.Config, agent, task: Task, played: dict, objective, ranks: int) -> dict:
    """What the command prints and writes to metrics.json: the run's settings, every player's
    figures beside the agent's and, where the task has a belief, its read-out from the agent's state."""
    split = SPLITS[args.split]
    metrics = {
        "checkpoint": str(args.checkpoint),
        "weights": "average"
        if args.weights != "trained" and checkpoint.has_average(args.checkpoint)
        else "trained",
        "task": config.to_dict(cfg)["task"],
        "seed": args.seed,
        "split": args.split,
        "episodes": args.episodes,
        "ranks": ranks,
        "training_objective": {"gamma": objective[0], "beta_e": objective[1]},
        **report(task, played, args.seed, split, objective),
    }
    decoded = belief_decoding(
        agent, task, cfg.task.trial_input, min(args.episodes, BELIEF_EPISODES), args.seed, split
    )
    if decoded is not None:
        metrics["belief_decoding"] = decoded
    return metrics


if __name__ == "__main__":
    sys.exit(main())
