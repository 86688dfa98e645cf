"""Evaluation with frozen weights during training, every eval.every updates.

Its episodes come from the noise split VALID: never trained on, and never the episodes that
`python -m dist_vpg.evaluate` reports on. They are the same episodes at every evaluation, so the
curve in eval.csv and TensorBoard (eval/) moves only with the weights. Every rank plays its share.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from dist_vpg import distributed, files, noise
from dist_vpg.batching import BatchPlan
from dist_vpg.config import Config
from dist_vpg.evaluation import evaluate, evaluate_agent
from dist_vpg.results import paired_gap
from dist_vpg.run_log import Board
from dist_vpg.tasks import Task

FILE = "eval.csv"
FIELDS = (
    "update",
    "episodes_trained",
    "agent_steps",
    "train_s",
    "episodes",
    "regret",
    "regret_sem",
    "reward",
    "reward_sem",
    "p_best_last_trial",
    "optimum",
    "gap",
    "gap_sem",
    "stage",  # the curriculum stage, from 1 (empty for a run without one)
)


class Validation:
    def __init__(
        self,
        cfg: Config,
        task: Task,
        world: distributed.World,
        run_dir: Path,
        board: Board,
        batches: BatchPlan,
        stage: int | None = None,
    ):
        """`stage`: the curriculum stage whose task `task` is (from 1), or None for a run without one."""
        self.cfg, self.task, self.world, self.board = cfg, task, world, board
        self.stage = stage
        self.path = run_dir / FILE
        self.batches = batches
        self._best: np.ndarray | None = None  # the best player's regret on the validation episodes
        self.last: dict | None = None  # the newest evaluation's row, for summary.json

    def due(self, done: int) -> bool:
        every = self.cfg.eval.every
        return every > 0 and (done % every == 0 or done == self.cfg.train.updates)

    def run(self, agent, done: int, train_s: float) -> dict:
        """Evaluate on every rank; rank 0 appends the row to eval.csv and logs it."""
        result = evaluate_agent(
            agent,
            self.task,
            self.cfg.task.trial_input,
            self.cfg.eval.episodes,
            self.cfg.seed,
            split=noise.VALID,
            world=self.world,
        )
        m = result.metrics()
        gap = self.gap(result.regret)
        trained = self.batches.episodes_before(done)
        row = {
            "update": done,
            "episodes_trained": trained,
            "agent_steps": trained * self.task.trials,
            "train_s": round(train_s, 3),
            "episodes": m["episodes"],
            "regret": m["regret_at_end"],
            "regret_sem": m["regret_sem"],
            "reward": m["reward_per_episode"],
            "reward_sem": m["reward_sem"],
            "p_best_last_trial": m["p_best_last_trial"],
            **gap,
            "stage": self.stage if self.stage is not None else "",
        }
        # A failed write (a full disk) stops every rank alike; eval.csv keeps its old rows.
        files.written_by_main(
            self.world,
            lambda: write_rows(self.path, (read_raw(self.path) if self.path.exists() else []) + [row]),
        )
        if self.world.is_main:
            keys = ("regret", "reward", "p_best_last_trial") + (("gap",) if gap else ())
            self.board.scalars(done, {"eval": {k: row[k] for k in keys}})
            self.board.say(self.line(row))
        self.last = row
        return row

    def gap(self, regret: np.ndarray) -> dict[str, float]:
        """The agent's regret less the task's best player's on the same episodes: mean and standard
        error of the per-episode differences ({} where the task has no best player). The episodes
        are the same at every evaluation, so the player plays them once."""
        if self._best is None:
            player = self.task.best()
            if player is None:
                return {}
            episodes, seed = self.cfg.eval.episodes, self.cfg.seed
            self._best = evaluate(player, self.task, episodes, seed, noise.VALID, self.world).regret
        return paired_gap(regret, self._best)

    def line(self, row: dict) -> str:
        """`eval 500: regret 4.99 ± 0.24 against the optimum's 1.76 on the same 500 episodes: gap
        +3.23 ± 0.22; reward 63.51`."""
        stage = f" (stage {self.stage})" if self.stage is not None else ""
        text = f"eval {row['update']}{stage}: regret {row['regret']:.2f} ± {row['regret_sem']:.2f}"
        if "gap" in row:
            best = (
                "the optimum's"
                if self.task.best_is_optimal
                else f"the best player's ({self.task.best_player})"
            )
            text += (
                f" against {best} {row['optimum']:.2f} on the same {row['episodes']} episodes: "
                f"gap {row['gap']:+.2f} ± {row['gap_sem']:.2f}"
            )
        else:
            text += f" ({row['episodes']} frozen-weight episodes)"
        return text + f"; reward {row['reward']:.2f}"

    def forget_after(self, update: int) -> None:
        """On resume: drop rows of updates the resumed run will play again."""
        if not self.world.is_main or not self.path.exists():
            return
        write_rows(self.path, [r for r in read_raw(self.path) if int(r["update"]) <= update])


def read_raw(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    """eval.csv whole, atomically: a failed write leaves the previous file intact."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    files.atomic_write(path, text.getvalue())


def read(path: Path) -> list[dict[str, float]]:
    """eval.csv's rows as numbers; a column a row has no value in (an evaluation made before the
    column existed, or a task with no best player) is NaN."""
    with open(path, newline="") as f:
        return [{k: float(v) if v else float("nan") for k, v in row.items()} for row in csv.DictReader(f)]
