"""A task defined outside dist_vpg (tests/outside/coin.py) trains under torchrun on 2 ranks, is
evaluated against its own players, plays in dist_vpg.play and passes Gymnasium's checker, named
by import path (task.name=coin:Coin) or registered in code, with no edit to dist_vpg/."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
import yaml
from gymnasium.utils.env_checker import check_env

from dist_vpg import checkpoint, config, gym_adapter, native, noise, tasks
from dist_vpg.agent import Agent
from dist_vpg.rollout import input_size
from tests.test_native import first_disagreements

OUTSIDE = Path(__file__).resolve().parent / "outside"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(OUTSIDE), os.environ.get("PYTHONPATH", "")]))


def run(*args, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=900, env=ENV, input=stdin
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A coin agent trained on 2 ranks under torchrun: its last checkpoint."""
    run_dir = tmp_path_factory.mktemp("coin") / "run"
    proc = run(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dist_vpg.train",
        "task.name=coin:Coin", "train.updates=200", "train.batch_episodes=64", "log.every=100",
        "eval.every=100", "eval.episodes=200", "log.progress=lines", "cpu.affinity=none", "train.average=0",
        f"run_dir={run_dir}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "update 200/200" in proc.stdout
    # no native step: one warning that says so, and the torch path
    assert proc.stdout.count("has no native step") == 1, proc.stdout
    assert "twopass rollout" in proc.stdout
    assert json.loads((run_dir / "summary.json").read_text())["world_size"] == 2
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["task"]["name"] == "coin:Coin"
    return checkpoint.existing(run_dir)[-1]


@pytest.mark.dist
def test_it_trains_on_two_ranks_and_beats_chance_against_its_own_players(trained, tmp_path):
    proc = run(
        "-m", "dist_vpg.evaluate", "--checkpoint", str(trained), "--episodes", "2000", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["task"] == {"name": "coin:Coin", "trials": 20, "trial_input": True, "bias": 0.8}
    regret = {name: m["regret_at_end"] for name, m in metrics["baselines"].items()}
    assert set(regret) == {"majority", "random"}
    assert regret["majority"] < 1.2 and regret["random"] == pytest.approx(6.0, abs=0.3)
    # the agent learned to follow the coin: far from chance, within reach of the majority rule
    assert metrics["agent"]["regret_at_end"] < 0.5 * regret["random"], metrics["agent"]
    assert {"regret.png", "p_best.png", "raster.png", "per_trial.csv"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.dist
def test_it_plays_in_dist_vpg_play(trained):
    proc = run("-m", "dist_vpg.play", "--checkpoint", str(trained), "--seed", "4", stdin="1\n" * 20)
    assert proc.returncode == 0, proc.stderr
    assert "coin:Coin: 20 trials, 2 choices" in proc.stdout
    assert "it came up" in proc.stdout and "Revealed: the coin came up heads with p = " in proc.stdout
    assert "the agent earned" in proc.stdout


@pytest.mark.slow  # builds coin.c (a compiler process)
def test_a_native_step_from_outside_plays_the_torch_episodes(on_path):
    from coin import NativeCoin

    task = NativeCoin()
    assert native.available(task) is None, native.available(task)
    torch.manual_seed(0)
    agent = Agent(input_size(task, True), task.num_actions, 16)
    draws = noise.draw(0, noise.TRAIN, 1, np.arange(512), task.trials, task.episode_draws, task.trial_draws)
    parted, _, worst = first_disagreements(agent, task, draws, True)
    assert parted == 0 or worst < 1e-5  # equal inputs, rewards and regrets where actions agree


@pytest.mark.slow
def test_it_trains_natively_from_its_own_c_file(tmp_path):
    proc = run(
        "-m", "dist_vpg.train", "task.name=coin:NativeCoin", "train.updates=30", "train.batch_episodes=32",
        "log.every=30", "eval.every=0", "log.progress=lines", "cpu.affinity=none",
        f"run_dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "update 30/30" in proc.stdout and "native rollout" in proc.stdout, proc.stdout
    assert "has no native step" not in proc.stdout + proc.stderr


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(OUTSIDE))
    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))  # registrations end with the test


def test_gymnasium_checker_passes_by_import_path(on_path):
    env = gymnasium.make(gym_adapter.GENERIC_ID, name="coin:Coin", trials=5)
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (2 + 2 + 1 + 1,)  # the last flip, the previous call, its reward, t/T


def test_a_task_registered_in_code_has_its_ids_and_settings(on_path):
    from coin import Coin

    tasks.register("coin", Coin)
    assert config.load(None, ["task.name=coin"]).task == Coin.Settings(name="coin")
    with pytest.raises(config.ConfigError, match=r"^task\.bias: must lie in \[0\.5, 1\]$"):
        config.load(None, ["task.name=coin", "task.bias=0.2"])
    gym_adapter.register()
    check_env(gymnasium.make("coin/Coin-v0").unwrapped)
    with pytest.raises(config.ConfigError, match="is not a task"):
        tasks.register("json", json.JSONDecoder)
