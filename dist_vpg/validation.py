"""Evaluation with frozen weights during training, every eval.every updates.

Its episodes come from the noise split VALID: never trained on, and never the episodes that
`python -m dist_vpg.evaluate` reports on. They are the same episodes at every evaluation, so the
curve in eval.csv and TensorBoard (eval/) moves only with the weights. Every rank plays its share.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from dist_vpg import distributed, files, noise
from dist_vpg.batching import BatchPlan
from dist_vpg.board import Board
from dist_vpg.config import Config
from dist_vpg.evaluate import evaluate_agent
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
    ):
        self.cfg, self.task, self.world, self.board = cfg, task, world, board
        self.path = run_dir / FILE
        self.batches = batches

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
        }
        # A failed write (a full disk) stops every rank alike; eval.csv keeps its old rows.
        files.written_by_main(
            self.world,
            lambda: write_rows(self.path, (read_raw(self.path) if self.path.exists() else []) + [row]),
        )
        if self.world.is_main:
            self.board.scalars(done, {"eval": {k: row[k] for k in ("regret", "reward", "p_best_last_trial")}})
            self.board.say(
                f"eval {done}: regret {row['regret']:.2f} ± {row['regret_sem']:.2f}, reward "
                f"{row['reward']:.2f} ({row['episodes']} frozen-weight episodes)"
            )
        return row

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
    """eval.csv's rows as numbers."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
