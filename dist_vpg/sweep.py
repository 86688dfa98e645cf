"""Sweeps: configs x overrides x seeds, trained several at a time and evaluated with frozen weights
on several fresh evaluation seeds, beside the task's optimum on the very same episodes.

    python -m dist_vpg.sweep --out DIR [--config FILE ...] [--grid key=v1,v2 ...] [--set key=value ...]
                             [--seeds 0 1 2] [--jobs 2] [--nproc 1] [--eval-seeds 101 102 103]
                             [--eval-episodes 20000] [--split valid|eval] [--optimum PLAYER]

Every combination of a --config (none: the defaults) and one value of each --grid key, with the
--set overrides, is trained once per --seeds under torchrun (--nproc ranks, --jobs jobs at a time,
each job on its own cores) into DIR/runs/. Each finished run is then evaluated on --eval-episodes
episodes of each --eval-seeds (the `valid` split by default: choose settings there, and state claims
on `eval` seeds drawn afterwards), the agent (its weights' average where it has one) and the task's
best player (--optimum names another) on the same episodes, and the gap between them is taken
episode by episode: its standard error is that of the per-episode differences.
DIR/sweep.md and DIR/sweep.json hold the table: per setting, each seed's regret, their mean and
spread, the wall clock, and the gap to the optimum with its standard error on each evaluation seed.

Run the same command again to go on after an interruption: finished runs and evaluations are kept,
an unfinished run resumes from its newest checkpoint (train.resume=auto). A run kept in DIR that was
trained with other settings than the command plans in its place (another --set, say: run directories
are named by the config and the grid alone) is refused before anything starts. Finished runs of the
planned settings at other seeds stay in the table: a sweep widened one seed at a time builds one table.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from dist_vpg import checkpoint, cli, config, files, results
from dist_vpg.config import ConfigError

POLL_S = 1.0


@dataclass(frozen=True)
class Run:
    config: str | None
    overrides: tuple[str, ...]  # the grid's values, then --set
    grid: tuple[str, ...]  # the grid's values alone: what tells this setting from the others
    seed: int

    @property
    def setting(self) -> str:
        """The table's name for the setting: the config's stem and the grid's values."""
        return " ".join([Path(self.config).stem if self.config else "defaults", *self.grid])

    def directory(self, out: Path) -> Path:
        return out / "runs" / f"{re.sub(r'[^A-Za-z0-9_.=-]+', '_', self.setting)}_seed{self.seed}"

    def arguments(self) -> list[str]:
        return [*(["--config", self.config] if self.config else []), *self.overrides, f"seed={self.seed}"]


def plan_runs(configs: list[str | None], grid: list[str], fixed: list[str], seeds: list[int]) -> list[Run]:
    """Every config x grid combination x seed, each loaded and checked before anything starts."""
    axes = []
    for item in grid:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"--grid {item}: must be key=value1,value2,...")
        axes.append([f"{key}={value}" for value in values.split(",")])
    runs = [
        Run(path, (*combo, *fixed), combo, seed)
        for path in configs
        for combo in itertools.product(*axes)
        for seed in seeds
    ]
    for key in ("run_dir", "train.resume", "cpu.affinity", "seed"):
        if any(o.startswith(f"{key}=") for o in [*grid, *fixed]):
            raise ConfigError(f"{key}: the sweep sets it for each run; leave it out")
    for run in runs:
        config.load(run.config, [*run.overrides, f"seed={run.seed}"])
    return runs


# What the sweep sets for each run itself, or what does not change what a run learns: a run kept in
# DIR may differ from the planned one in these alone.
OWN_KEYS = ("run_dir", "train.resume", "cpu.affinity", "log.progress")


def _flat(data: dict, prefix: str = "") -> dict:
    found = {}
    for key, value in data.items():
        if isinstance(value, dict):
            found.update(_flat(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def check_kept(runs: list[Run], out: Path) -> None:
    """Refuse a run kept in DIR/runs that was trained with other settings than the one planned in its
    place (another --set, an edited config): it would be taken for finished, or resumed, as it is."""
    for run in runs:
        stored = run.directory(out) / "config.yaml"
        if not stored.exists():
            continue
        try:
            was = _flat(config.to_dict(checkpoint.trained_config(yaml.safe_load(stored.read_text()))))
        except (ConfigError, yaml.YAMLError, AttributeError) as e:
            reason = f"--out: {stored} does not read as a configuration ({e}): remove that run"
            raise ConfigError(reason) from None
        now = _flat(config.to_dict(config.load(run.config, [*run.overrides, f"seed={run.seed}"])))
        differ = [key for key in now if key not in OWN_KEYS and was.get(key) != now[key]]
        if differ:
            key = differ[0]
            raise ConfigError(
                f"--out: {stored.parent} was trained with other settings ({key} {was.get(key)!r} there, "
                f"{now[key]!r} here{f', and {len(differ) - 1} more' if len(differ) > 1 else ''}): "
                "use another --out, or remove that run"
            )


def kept_runs(runs: list[Run], out: Path) -> list[Run]:
    """Finished runs kept in DIR of the planned settings, at seeds the command does not name: the
    table holds them too, so that a rerun with fewer seeds does not drop what an earlier one trained."""
    found = []
    for setting in dict.fromkeys((run.config, run.overrides, run.grid) for run in runs):
        named = {run.seed for run in runs if (run.config, run.overrides, run.grid) == setting}
        stem = Run(*setting, seed=0).directory(out).name.removesuffix("_seed0")
        for directory in (out / "runs").glob(f"{glob.escape(stem)}_seed*"):
            seed = re.fullmatch(re.escape(stem) + r"_seed(\d+)", directory.name)
            run = Run(*setting, int(seed[1])) if seed else None
            if run is not None and run.seed not in named and finished(run, out):
                found.append(run)
    return found


def finished(run: Run, out: Path) -> bool:
    summary = run.directory(out) / "summary.json"
    if not summary.exists():
        return False
    data = json.loads(summary.read_text())
    return data.get("last_update") == data.get("updates")


def train_all(runs: list[Run], out: Path, jobs: int, nproc: int, say) -> list[Run]:
    """Train the runs not yet finished, `jobs` at a time; returns the runs that failed."""
    todo = [run for run in runs if not finished(run, out)]
    say(f"sweep: {len(runs) - len(todo)} of {len(runs)} runs already finished; training {len(todo)}")
    running: dict[int, tuple[Run, subprocess.Popen, float]] = {}  # slot -> run, process, start
    failed = []
    cores = sorted(os.sched_getaffinity(0))  # the cores this process may use (taskset, a cgroup)
    while todo or running:
        for slot in range(jobs):
            if slot not in running and todo:
                run = todo.pop(0)
                affinity = ",".join(str(cores[(slot * nproc + i) % len(cores)]) for i in range(nproc))
                running[slot] = (run, start_job(run, out, nproc, affinity), time.perf_counter())
                say(f"sweep: started {run.setting} seed {run.seed} on core(s) {affinity}")
        time.sleep(POLL_S)
        for slot, (run, proc, began) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[slot]
            log = run.directory(out) / "train.log"
            if proc.returncode == 0 and finished(run, out):
                say(f"sweep: finished {run.setting} seed {run.seed} in {time.perf_counter() - began:.0f} s")
            else:
                failed.append(run)
                say(f"sweep: {run.setting} seed {run.seed} failed (exit {proc.returncode}); see {log}")
    return failed


def start_job(run: Run, out: Path, nproc: int, affinity: str) -> subprocess.Popen:
    directory = run.directory(out)
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "dist_vpg.train", *run.arguments(), f"run_dir={directory}", "train.resume=auto"]
    cmd += [f"cpu.affinity=[{affinity}]", "log.progress=lines"]
    log = open(directory / "train.log", "a")  # noqa: SIM115 - the child holds it; closed with the process
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def paired_gap(path: str, seed: int, split: str, episodes: int, optimum: str | None) -> dict:
    """The agent of checkpoint `path` and the task's `optimum` player on the same `episodes`
    episodes of (seed, split): their mean regrets and the mean and standard error of the
    per-episode difference (the optimum absent: the agent's alone)."""
    import torch

    from dist_vpg import evaluation
    from dist_vpg.tasks import make_task

    torch.set_num_threads(1)
    agent, cfg = checkpoint.load_agent(Path(path))
    task = make_task(cfg.task)
    split_id = evaluation.SPLITS[split]
    mine = evaluation.evaluate_agent(agent, task, cfg.task.trial_input, episodes, seed, split_id).regret
    found = {"episodes": episodes, "agent": float(mine.mean()), "agent_sem": results.sem(mine)}
    player = task.players(evaluation.training_objective(cfg)).get(optimum) if optimum else task.best()
    if player is not None:
        found |= results.paired_gap(mine, evaluation.evaluate(player, task, episodes, seed, split_id).regret)
    return found


def evaluate_all(runs: list[Run], out: Path, args, say) -> dict[tuple[Run, int], dict]:
    """Each finished run on each evaluation seed, kept in its run directory: done once."""
    found, todo = {}, []
    for run in runs:
        if not finished(run, out):
            continue
        for seed in args.eval_seeds:
            cache = run.directory(out) / f"sweep_eval_{args.split}_{seed}_{args.eval_episodes}.json"
            if cache.exists():
                found[(run, seed)] = json.loads(cache.read_text())
            else:
                todo.append((run, seed, cache))
    say(f"sweep: {len(todo)} evaluation(s) of {args.eval_episodes} episodes to play")
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            (run, seed, cache): pool.submit(
                paired_gap,
                str(checkpoint.existing(run.directory(out))[-1]),
                seed,
                args.split,
                args.eval_episodes,
                args.optimum,
            )
            for run, seed, cache in todo
        }
        for (run, seed, cache), future in futures.items():
            result = future.result()
            files.atomic_write(cache, json.dumps(result, indent=2) + "\n")
            found[(run, seed)] = result
    return found


def table(runs: list[Run], out: Path, results: dict, eval_seeds: list[int]) -> tuple[str, list[dict]]:
    """The markdown table and its rows: one per setting, its seeds' figures side by side."""
    rows = []
    settings = list(dict.fromkeys(run.setting for run in runs))
    for setting in settings:
        mine = [
            run for run in runs if run.setting == setting and all((run, s) in results for s in eval_seeds)
        ]
        if not mine:
            continue
        per_seed = [np.mean([results[(run, s)]["agent"] for s in eval_seeds]) for run in mine]
        summaries = [json.loads((run.directory(out) / "summary.json").read_text()) for run in mine]
        row = {
            "setting": setting,
            "seeds": [run.seed for run in mine],
            "regret": [float(x) for x in per_seed],
            "mean": float(np.mean(per_seed)),
            "spread": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
            "episodes": summaries[0]["episodes"],
            "wall_s": float(np.median([s["wall_s"] for s in summaries])),
        }
        gaps = [results[(run, s)] for run in mine for s in eval_seeds]
        if all("gap" in g for g in gaps):
            row["gaps"] = [
                {
                    "seed": run.seed,
                    "eval_seed": s,
                    **{k: results[(run, s)][k] for k in ("gap", "gap_sem", "optimum")},
                }
                for run in mine
                for s in eval_seeds
            ]
            row["optimum"] = float(np.mean([g["optimum"] for g in row["gaps"]]))
            row["worst_gap_percent"] = max(100 * g["gap"] / g["optimum"] for g in row["gaps"])
        rows.append(row)
    header = ["setting", "seeds", "episodes", "wall (median)", "regret per seed", "mean ± spread", "optimum"]
    header += ["gap to optimum, each eval seed (± SE)", "worst gap"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        gaps = (
            "; ".join(f"{g['gap']:+.3f} ± {g['gap_sem']:.3f}" for g in row["gaps"]) if "gaps" in row else "-"
        )
        worst = f"{row['worst_gap_percent']:.1f}%" if "gaps" in row else "-"
        optimum = f"{row['optimum']:.3f}" if "gaps" in row else "-"
        wall = f"{row['wall_s']:.0f} s" if row["wall_s"] < 120 else f"{row['wall_s'] / 60:.1f} min"
        lines.append(
            f"| {row['setting']} | {', '.join(map(str, row['seeds']))} | {row['episodes']:,} | {wall} | "
            f"{', '.join(f'{x:.3f}' for x in row['regret'])} | {row['mean']:.3f} ± {row['spread']:.3f} | "
            f"{optimum} | {gaps} | {worst} |"
        )
    return "\n".join(lines) + "\n", rows


def parse_args(argv: list[str] | None):
    parser = cli.Parser("dist_vpg.sweep", __doc__)
    parser.add_argument("--out", type=Path, required=True, help="the sweep's directory (runs, table)")
    parser.add_argument("--config", action="append", help="a YAML config (repeat for several)")
    parser.add_argument("--grid", action="append", default=[], help="key=v1,v2,...: one run per value")
    parser.add_argument("--set", action="append", default=[], help="key=value for every run")
    parser.add_argument("--seeds", type=cli.seed, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=cli.at_least(1), default=2, help="training jobs at a time")
    parser.add_argument("--nproc", type=cli.at_least(1), default=1, help="ranks of each job")
    parser.add_argument("--eval-seeds", type=cli.seed, nargs="+", default=[101, 102, 103])
    parser.add_argument("--eval-episodes", type=cli.at_least(2), default=20000)
    parser.add_argument("--split", choices=("valid", "eval"), default="valid")
    parser.add_argument(
        "--optimum", help="the task's player the gap is taken to (default: its best, TaskUnit.best_player)"
    )
    return parser, parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    say = lambda text: print(text, flush=True)
    try:
        runs = plan_runs(args.config or [None], args.grid, args.set, args.seeds)
        files.writable_dir(args.out, "--out")
        kept = kept_runs(runs, args.out)
        check_kept(runs + kept, args.out)
    except ConfigError as e:
        return cli.refuse(parser.name, str(e))
    failed = train_all(runs, args.out, args.jobs, args.nproc, say)
    if kept:
        say(f"sweep: the table also holds {len(kept)} finished run(s) of these settings kept in {args.out}")
    order = {setting: i for i, setting in enumerate(dict.fromkeys(run.setting for run in runs))}
    in_table = sorted(runs + kept, key=lambda run: (order[run.setting], run.seed))
    results = evaluate_all(in_table, args.out, args, say)
    text, rows = table(in_table, args.out, results, args.eval_seeds)
    files.atomic_write(args.out / "sweep.md", text)
    files.atomic_write(
        args.out / "sweep.json",
        json.dumps({"arguments": vars(args), "rows": rows}, indent=2, default=str) + "\n",
    )
    print(text, end="")
    say(f"sweep: table in {args.out / 'sweep.md'} and {args.out / 'sweep.json'}")
    if failed:
        say(f"sweep: {len(failed)} run(s) failed; run the same command again to retry them")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
