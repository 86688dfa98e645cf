"""The periodic evaluation: the agent beside the task's best player on the same episodes, the gap
between them paired, and the player played once for the whole run."""

import numpy as np
import pytest
import torch

from dist_vpg import batching, config, distributed, noise, validation
from dist_vpg.distributed import World
from dist_vpg.evaluation import evaluate, evaluate_agent
from dist_vpg.rollout import make_agent
from dist_vpg.run_log import Board
from dist_vpg.tasks import make_task


@pytest.fixture(autouse=True)
def one_rank_group(monkeypatch):
    """A plain process's one-rank group, as training starts it (eval.csv's write is a collective)."""
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    distributed.init(World(), timeout_s=60)
    yield
    distributed.shutdown()


def _validation(tmp_path, overrides):
    cfg = config.load(None, ["eval.episodes=300", "log.tensorboard=false", "log.progress=lines", *overrides])
    task = make_task(cfg.task)
    board = Board(tmp_path, cfg.log, cfg.train.updates, enabled=True)
    v = validation.Validation(cfg, task, World(), tmp_path, board, batching.plan(cfg, 1))
    torch.manual_seed(0)
    return v, cfg, task, make_agent(task, cfg.task.trial_input, cfg.agent.hidden, False)


def test_the_gap_is_the_agent_less_the_optimum_on_the_same_episodes(tmp_path, capsys, monkeypatch):
    v, cfg, task, agent = _validation(tmp_path, [])
    played = []
    monkeypatch.setattr(validation, "evaluate", lambda *a, **k: played.append(1) or evaluate(*a, **k))
    first, second = v.run(agent, 250, 1.0), v.run(agent, 500, 2.0)
    assert len(played) == 1  # the same episodes every time: the optimum plays them once
    mine = evaluate_agent(agent, task, True, 300, cfg.seed, noise.VALID).regret
    best = evaluate(task.best(), task, 300, cfg.seed, noise.VALID).regret
    assert first["optimum"] == pytest.approx(best.mean())
    assert first["gap"] == pytest.approx((mine - best).mean(), abs=1e-5)
    assert first["gap_sem"] == pytest.approx((mine - best).std(ddof=1) / np.sqrt(300), rel=1e-4)
    assert second["gap"] == first["gap"] and v.last == second
    said = capsys.readouterr().out
    assert f"against the optimum's {best.mean():.2f} on the same 300 episodes: gap +" in said
    rows = validation.read(tmp_path / validation.FILE)
    assert [r["gap"] for r in rows] == pytest.approx([first["gap"]] * 2)


def test_a_task_without_a_best_player_shows_the_agent_alone(tmp_path, capsys):
    v, _, task, agent = _validation(tmp_path, ["task.arms=3"])  # no exact optimum for 3 arms
    assert task.best() is None
    row = v.run(agent, 250, 1.0)
    assert "gap" not in row and "(300 frozen-weight episodes)" in capsys.readouterr().out
    assert np.isnan(validation.read(tmp_path / validation.FILE)[0]["gap"])
