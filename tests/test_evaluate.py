"""The evaluation command end to end: outputs, splitting over ranks, and bad input."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dist_vpg import checkpoint, config, distributed, evaluate, evaluation, noise, train
from dist_vpg.agent import Agent
from dist_vpg.rollout import input_size
from dist_vpg.tasks import make_task

from .helpers import raised, run_ranks


def make_checkpoint(directory, overrides) -> str:
    """An untrained agent saved as a training run would save it."""
    cfg = config.from_dict({}, overrides)
    task = make_task(cfg.task)
    torch.manual_seed(0)
    agent = Agent(input_size(task, cfg.task.trial_input), task.num_actions, cfg.agent.hidden)
    optimizer = train.make_optimizer(cfg, agent)
    directory.mkdir(parents=True)
    return str(checkpoint.save_training_state(directory, cfg, 1, agent, optimizer, None))


def test_bandit_outputs(tmp_path):
    path = make_checkpoint(tmp_path / "run", ["task.trials=20", "agent.hidden=8"])
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", path, "--episodes", "300", "--seed", "3", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["episodes"] == 300 and metrics["seed"] == 3
    players = ["agent"] + list(metrics["baselines"])
    players_wanted = {"random", "ucb1", "thompson", "bayes_optimal", "objective_optimal"}
    assert set(metrics["baselines"]) == players_wanted
    # the checkpoint's final objective (the bandit default's schedule ends: gamma 1, beta_e 0.003) and
    # its exact ceiling beside Bayes-optimal
    assert metrics["training_objective"] == {"gamma": 1.0, "beta_e": 0.003}
    exact = metrics["exact_regret_at_end"]
    assert exact["objective_optimal"] > exact["bayes_optimal"] > 0
    for m in [metrics["agent"], *metrics["baselines"].values()]:
        assert m["episodes"] == 300 and np.isfinite(m["regret_at_end"]) and m["regret_sem"] > 0
    # the Bayes-optimal policy beats an untrained agent by a margin on 20 trials
    assert metrics["baselines"]["bayes_optimal"]["regret_at_end"] < metrics["agent"]["regret_at_end"] - 0.5
    rows = list(csv.DictReader(open(out / "per_trial.csv")))
    assert len(rows) == 20 and [int(r["trial"]) for r in rows] == list(range(1, 21))
    at_end = {"agent": metrics["agent"], **metrics["baselines"]}
    for player in players:
        regret = [float(r[f"{player}_regret"]) for r in rows]
        assert np.all(np.diff(regret) >= -1e-6)  # cumulative
        assert regret[-1] == pytest.approx(at_end[player]["regret_at_end"], rel=1e-4)
    for png in ("regret.png", "p_best.png", "raster.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_two_step_outputs(tmp_path):
    path = make_checkpoint(tmp_path / "run", ["task.name=two_step", "task.trials=30", "agent.hidden=8"])
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", path, "--episodes", "200", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # the Bayes-optimal player beside the agent: it never leaves a rewarded-common choice
    bayes_stay = metrics["baselines"]["bayes_optimal"]["stay_probabilities"]
    assert bayes_stay["rewarded_common"]["p"] == 1.0 and bayes_stay["unrewarded_rare"]["p"] == 1.0
    assert (
        metrics["baselines"]["bayes_optimal"]["reward_per_episode"] > metrics["agent"]["reward_per_episode"]
    )
    kinds = metrics["stay_probabilities"]
    assert set(kinds) == {"rewarded_common", "rewarded_rare", "unrewarded_common", "unrewarded_rare"}
    assert all(0 <= k["p"] <= 1 and k["sem"] > 0 for k in kinds.values())
    mbi = metrics["model_based_index"]
    assert mbi["pairs"] == 200 * 29 and mbi["index"] == mbi["coefficients"]["interaction"]
    assert (out / "stay.png").read_bytes()[:4] == b"\x89PNG"


def test_a_checkpoint_from_before_the_schedules_keeps_its_objective(tmp_path):
    """A config saved before gamma_final and value_scale existed was trained with gamma constant and
    a raw critic, whatever today's defaults are."""
    path = make_checkpoint(tmp_path / "run", ["task.trials=20", "agent.hidden=8"])
    state = torch.load(path, weights_only=True)
    for key in ("gamma_final", "value_scale"):
        del state["config"]["train"][key]
    state["config"]["train"].update(beta_e_final=-1.0)
    torch.save(state, path)
    _, cfg = checkpoint.load_agent(path)
    assert cfg.train.gamma_final == -1.0 and cfg.train.value_scale is False
    assert evaluation.training_objective(cfg) == (0.9, 0.05)


def test_common_transitions_are_read_back_from_what_the_agent_saw():
    cfg = config.from_dict({}, ["task.name=two_step", "task.trials=50", "task.swap_prob=0"])
    task = make_task(cfg.task)
    agent = Agent(input_size(task, True), 2, 8)
    result = evaluation.evaluate_agent(agent, task, True, episodes=400, seed=1)
    assert result.extra["common"].shape == (49, 400)
    assert result.extra["common"].mean() == pytest.approx(cfg.task.common_prob, abs=0.01)


def split_worker(path: str, episodes: int) -> dict:
    world = distributed.world_from_env()
    distributed.init(world, 60)
    try:
        agent, cfg = checkpoint.load_agent(path)
        task = make_task(cfg.task)
        mine = evaluation.evaluate_agent(agent, task, True, episodes, seed=5, world=world)
        others = evaluation.evaluate_baselines(task, episodes, seed=5, world=world)
        return {"agent": mine.regrets, **{n: r.regrets for n, r in others.items()}}
    finally:
        distributed.shutdown()


@pytest.mark.dist
def test_two_ranks_evaluate_exactly_what_one_process_does(tmp_path):
    path = make_checkpoint(tmp_path / "run", ["task.trials=15", "agent.hidden=8"])
    episodes = 2 * evaluation.CHUNK + 37  # three chunks of unequal size over two ranks
    (one,) = run_ranks(1, split_worker, path, episodes)
    two = run_ranks(2, split_worker, path, episodes)
    assert raised(one) is None and raised(two[0]) is None, (one, two)
    for name, regrets in one.items():
        assert regrets.shape == (15, episodes)
        for rank in range(2):
            np.testing.assert_array_equal(two[rank][name], regrets, err_msg=name)


def test_bad_input_gives_one_line(tmp_path, capsys):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert evaluate.main(["--checkpoint", str(foreign)]) == 2
    assert "dist_vpg.evaluate:" in capsys.readouterr().err
    truncated = tmp_path / "truncated.pt"
    good = make_checkpoint(tmp_path / "run", ["agent.hidden=8"])
    truncated.write_bytes(open(good, "rb").read()[:500])
    assert evaluate.main(["--checkpoint", str(truncated)]) == 2
    # weights of another shape do not fit: a clear error, not a shape mismatch deep in torch
    assert evaluate.main(["--checkpoint", good, "task.arms=3"]) == 2
    err = capsys.readouterr().err
    assert "do not fit" in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "trained with task.arms=2" in last and "task.arms=3" in last and "\\" not in last, last
    # another task: a sentence saying so, not the checkpoint's bandit keys refused as two-step's
    assert evaluate.main(["--checkpoint", good, "task.name=two_step"]) == 2
    err = capsys.readouterr().err
    assert "an agent of the bandit task cannot play two_step" in err and len(err.strip().splitlines()) == 1
    assert evaluate.main(["--checkpoint", good, "task.name=bandit", "--episodes", "20"]) == 0  # its own
    with pytest.raises(SystemExit):
        evaluate.main(["--checkpoint", good, "train.lr=0.1"])


@pytest.mark.dist
def test_the_command_under_torchrun_writes_what_one_process_writes(tmp_path):
    path = make_checkpoint(tmp_path / "run", ["task.trials=15", "agent.hidden=8"])
    args = ["--checkpoint", path, "--episodes", "600", "--seed", "2"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        launcher + ["-m", "dist_vpg.evaluate", *args, "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert evaluate.main([*args, "--out", str(tmp_path / "one")]) == 0
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert two["ranks"] == 2 and one["ranks"] == 1
    assert two["agent"] == one["agent"] and two["baselines"] == one["baselines"]
    assert (tmp_path / "two" / "per_trial.csv").read_text() == (
        tmp_path / "one" / "per_trial.csv"
    ).read_text()


def test_informative_arms_baselines_score_their_exact_figures():
    """Optimal: the informative arm, then the target: 5 * 4 + mean index / 10 = 20.55. Thompson and
    UCB search the 10 ordinary arms: found on pull k (k = 1..5, each 1/10) earns (k - 1) + 5 (6 - k),
    else 5: 11.0 on average. Random: 5 * (5 + 9 + 0.55) / 11 = 6.614."""
    cfg = config.from_dict({}, ["task.name=informative_arms", "task.arms=11", "task.trials=5"])
    task = make_task(cfg.task)
    found = evaluation.evaluate_baselines(task, 20000, 5)
    reward = {name: r.rewards.sum(0).mean() for name, r in found.items()}
    assert reward["optimal"] == pytest.approx(20.55, abs=0.02)
    # a search's episode reward has a standard deviation of 7.2: 0.05 standard error here
    for search in ("thompson", "ucb"):
        assert reward[search] == pytest.approx(11.0, abs=0.2), search
    assert reward["random"] == pytest.approx(5 * 14.55 / 11, abs=0.1)
    pulls = {name: task.pulls(r) for name, r in found.items()}
    assert pulls["optimal"]["informative"] == [1, 0, 0, 0, 0]
    assert pulls["optimal"]["target"] == [0, 1, 1, 1, 1]
    assert max(pulls["thompson"]["informative"]) == 0 == max(pulls["ucb"]["informative"])
    # a louder informative arm (the curriculum's first stage): the optimal player still reads it
    loud = ["task.name=informative_arms", "task.arms=11", "task.trials=5", "task.informative_scale=5"]
    loud = make_task(config.from_dict({}, loud).task)
    optimal = evaluation.evaluate_baselines(loud, 2000, 5)["optimal"]
    assert optimal.rewards.sum(0).mean() == pytest.approx(20 + 5 * 0.55, abs=0.05)
    assert (optimal.regrets[1:] == 0).all()


def test_the_validation_split_plays_other_episodes_and_says_so(tmp_path, capsys):
    path = make_checkpoint(tmp_path / "run", ["task.trials=20", "agent.hidden=8"])
    found = {}
    for split in ("eval", "valid"):
        assert evaluate.main(["--checkpoint", path, "--episodes", "50", "--split", split, "--json"]) == 0
        found[split] = json.loads(capsys.readouterr().out)
        assert found[split]["split"] == split
    regrets = [found[s]["baselines"]["random"]["regret_at_end"] for s in ("eval", "valid")]
    assert regrets[0] != regrets[1]  # other arm probabilities, other draws
    agent, cfg = checkpoint.load_agent(path)
    task = make_task(cfg.task)
    direct = evaluation.evaluate_agent(agent, task, True, 50, 12345, noise.VALID)
    assert found["valid"]["agent"]["regret_at_end"] == pytest.approx(float(direct.regret.mean()))


def test_the_command_prints_a_short_table_and_json_on_request(tmp_path, capsys):
    path = make_checkpoint(tmp_path / "run", ["task.trials=20", "agent.hidden=8"])
    out = tmp_path / "eval"
    assert evaluate.main(["--checkpoint", path, "--episodes", "300", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(lines) <= 12 and lines[-1] == f"metrics.json, per_trial.csv and figures in {out}"
    rows = {line.split()[0]: line for line in lines[2:8]}
    assert set(rows) == {"agent", "random", "ucb1", "thompson", "bayes_optimal", "objective_optimal"}
    agent = metrics["agent"]
    assert f"{agent['regret_at_end']:.3f} ± {agent['regret_sem']:.3f}" in rows["agent"]
    exact = metrics["exact_regret_at_end"]["bayes_optimal"]
    assert f"exact over all episodes: {exact:.3f}" in rows["bayes_optimal"]
    # the gap to the best player, episode by episode on the same episodes
    gap = metrics["gap_to_best"]
    assert gap["player"] == "bayes_optimal" and gap["exact_optimum"]
    best = metrics["baselines"]["bayes_optimal"]["regret_at_end"]
    assert gap["gap"] == pytest.approx(agent["regret_at_end"] - best, abs=1e-5) and gap["gap_sem"] > 0
    assert f"{gap['gap']:+.3f} ± {gap['gap_sem']:.3f}" in lines[-2]
    assert evaluate.main(["--checkpoint", path, "--episodes", "300", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["agent"] == agent
