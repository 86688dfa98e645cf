"""The figures every task shares: the gap panel's figures, the raster's colours and each task's view
of its raster, and the choice steps the figures count."""

import csv
import json
import struct

import numpy as np
import pytest

from dist_vpg import config, evaluate, evaluation, plots
from dist_vpg.results import EvalResult, paired_gap
from dist_vpg.tasks import make_task


def png_width(path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def test_the_gap_by_trial_is_the_paired_gap_of_the_same_episodes():
    rng = np.random.default_rng(0)
    agent, best = rng.exponential(0.05, (30, 400)), rng.exponential(0.04, (30, 400))
    mean, sem = plots.gap_by_trial({"agent": agent, "optimal": best}, "optimal")
    at_end = paired_gap(agent.sum(0), best.sum(0))
    assert mean[-1] == pytest.approx(at_end["gap"]) and sem[-1] == pytest.approx(at_end["gap_sem"])
    assert mean[0] == pytest.approx((agent[0] - best[0]).mean())


def test_regret_png_shows_the_gap_where_the_task_has_a_best_player(tmp_path):
    rng = np.random.default_rng(1)
    regrets = {name: rng.exponential(0.05, (20, 100)) for name in ("agent", "optimal", "random")}
    plots.regret_figure(regrets, "optimal", tmp_path / "with.png")
    plots.regret_figure(regrets, None, tmp_path / "without.png")
    assert png_width(tmp_path / "with.png") == 2 * png_width(tmp_path / "without.png")


def test_the_raster_has_a_colour_for_each_of_up_to_twenty_codes(tmp_path):
    for count in (2, 10, 11, 20):
        assert len(set(plots.palette(count))) == count
    actions = np.arange(11).repeat(3).reshape(11, 3) % 11  # every one of 11 actions
    view = plots.RasterView.of_actions(actions, actions > 5, "arm")
    assert view.labels == [f"arm {a}" for a in range(1, 12)] and view.dots.sum() == 15
    plots.sorted_raster(view, None, "", tmp_path / "raster.png")
    assert (tmp_path / "raster.png").read_bytes()[:4] == b"\x89PNG"


def test_informative_arms_raster_names_each_pull_for_what_it_was():
    task = make_task(config.from_dict({}, ["task.name=informative_arms"]).task)
    optimal = evaluation.evaluate_baselines(task, 100, 3)["optimal"]
    view = task.raster_view(optimal)
    # the informative arm first, then the target it pointed at, in every episode
    assert (view.codes[0] == 2).all() and (view.codes[1:] == 0).all()
    assert "informative" in view.labels[2] and "target" in view.labels[0] and view.dots is None


def test_harlow_figures_count_choices_and_colour_the_object_taken(tmp_path):
    """With fixation, 6 trials take 12 agent steps: per_trial.csv and the figures count 6."""
    from tests.test_evaluate import make_checkpoint

    overrides = ["task.name=harlow", "task.trials=6", "task.fixation=true", "agent.hidden=8"]
    path = make_checkpoint(tmp_path / "run", overrides + ["train.rollout=twopass"])
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", path, "--episodes", "200", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "per_trial.csv")))
    metrics = json.loads((out / "metrics.json").read_text())
    assert [int(r["trial"]) for r in rows] == list(range(1, 7))
    assert float(rows[-1]["agent_regret"]) == pytest.approx(metrics["agent"]["regret_at_end"], rel=1e-4)
    task = make_task(config.from_dict({}, overrides).task)
    optimal = evaluation.evaluate_baselines(task, 100, 3)["optimal"].at_steps(task.choice_steps)
    view = task.raster_view(optimal)
    assert view.codes.shape == (6, 100) and (view.codes[1:] == 0).all()  # right from trial 2 on
    assert view.labels == ["the rewarded object", "the other object"]


def test_at_steps_keeps_the_episodes_records():
    result = EvalResult(np.ones((4, 3)), np.zeros((4, 3)), np.zeros((4, 3)), {"gap": np.arange(3)})
    kept = result.at_steps([1, 3])
    assert kept.regrets.shape == (2, 3) and kept.extra["gap"].tolist() == [0, 1, 2]
