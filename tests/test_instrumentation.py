"""TensorBoard tags, PEEK, the zero-gradient trap and inspect, on real runs."""

import pytest
import torch

from dist_vpg import inspect_update, plots, sync
from dist_vpg.agent import Agent
from tests.helpers import raised, run_ranks, train_worker

SMOKE = "configs/smoke.yaml"


def _tags(run_dir) -> set[str]:
    from tests.tensorboard_reader import read_tags

    return read_tags(run_dir / "tb")


@pytest.mark.slow
def test_tensorboard_tag_groups(tmp_path):
    run_dir = tmp_path / "run"
    (summary,) = run_ranks(
        1,
        train_worker,
        SMOKE,
        ["train.updates=4", "log.every=2", "log.histograms_every=2", "eval.every=2", f"run_dir={run_dir}"]
        + ["sync.measure_wait=true"],
    )
    assert raised(summary) is None, summary
    tags = _tags(run_dir)
    for tag in [
        "charts/episode_return",
        "charts/episode_return_ema",
        "charts/regret",
        "charts/lr",
        "charts/beta_e",
        "charts/gamma",
        "charts/batch_episodes",
        "losses/policy",
        "losses/value",
        "losses/entropy",
        "losses/grad_norm",
        "losses/grad_norm_clipped",
        "comm/allreduce_sync_ms",
        "comm/allreduce_wait_ms",
        "comm/skipped_updates",
        "perf/rollout_ms",
        "perf/backward_ms",
        "perf/sync_ms",
        "perf/sync_wait_ms",
        "perf/optimizer_ms",
        "perf/tracker_ms",
        "perf/steps_per_s",
        "weights/lstm.weight_hh_l0",
        "grads/policy.weight",
        "eval/regret",
        "eval/reward",
        "eval/p_best_last_trial",
    ]:
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    assert summary["tracker"]["episodes_total"] == 4 * 32  # the tracker saw every episode


@pytest.mark.slow
def test_peek_file_makes_a_picture(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / plots.PEEK_FILE).touch()  # asked for before the run starts: the first batch is drawn
    (summary,) = run_ranks(1, train_worker, SMOKE, ["train.updates=2", f"run_dir={run_dir}"])
    assert raised(summary) is None, summary
    pictures = list(run_dir.glob("peek-*.png"))
    assert len(pictures) == 1 and pictures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (run_dir / plots.PEEK_FILE).exists()


def test_zero_gradient_trap_names_the_parameter():
    agent = Agent(4, 2, 8)
    with torch.no_grad():
        agent.policy.weight.normal_()
    logits, _ = agent(torch.rand(3, 2, 4))
    (logits[..., 0] - logits[..., 1]).sum().backward()  # reaches the LSTM and the policy, not the value head
    said = []
    trap = sync.ZeroGradTrap(said.append)
    for p in agent.value.parameters():
        p.grad = torch.zeros_like(p)
    assert trap.check(agent, 7) == ["value.weight", "value.bias"]
    trap.check(agent, 8)
    assert len(said) == 2 and "value.weight" in said[0] and "update 7" in said[0]


def test_inspect_components_add_up(capsys):
    assert inspect_update.main(["--config", SMOKE, "train.batch_episodes=4", "task.trials=10"]) == 0
    out = capsys.readouterr().out
    for part in ("# policy", "# value", "# entropy", "# total", "lstm.weight_hh_l0", "median"):
        assert part in out
    assert "add up to the total gradient for every parameter" in out
    # a fresh agent: zero policy gradients into the LSTM and a zero entropy gradient, each said why
    assert "note: policy: zero into the LSTM because policy.weight is zero" in out
    assert "note: entropy: zero everywhere" in out
    value_bias = next(line for line in out.splitlines() if line.startswith("value.bias"))
    assert "nan" not in value_bias and value_bias.split()[3] == "-"  # no spread of one number


def test_components_add_up_catches_a_mismatch():
    grads = {part: {"w": torch.ones(3)} for part in ("policy", "value", "entropy")}
    grads["total"] = {"w": torch.full((3,), 3.0)}
    assert inspect_update.components_add_up(grads) == []
    grads["total"]["w"][1] = 2.5
    assert inspect_update.components_add_up(grads) == ["w"]


@pytest.mark.slow
def test_optional_unreachable_tracker_lets_the_run_go_on(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # rank 0's server would take the port; a probe occupying it makes the server fail to start
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen(1)
    try:
        results = run_ranks(
            2,
            train_worker,
            SMOKE,
            [
                "train.updates=2",
                "tracker.host=127.0.0.1",
                f"tracker.port={port}",
                "tracker.required=false",
                f"run_dir={tmp_path / 'run'}",
            ],
        )
        assert all(raised(r) is None for r in results), results
        assert results[0]["tracker"] is None
        required = run_ranks(
            2,
            train_worker,
            SMOKE,
            [
                "train.updates=2",
                "tracker.host=127.0.0.1",
                f"tracker.port={port}",
                f"run_dir={tmp_path / 'run2'}",
            ],
        )
        for r in required:
            kind, message = raised(r)
            assert kind == "TrackerError" and f"127.0.0.1:{port}" in message
    finally:
        blocker.close()


@pytest.mark.slow
def test_inspect_a_checkpoint_with_overrides(tmp_path, capsys):
    (summary,) = run_ranks(1, train_worker, SMOKE, ["train.updates=2", f"run_dir={tmp_path / 'run'}"])
    assert raised(summary) is None, summary
    ckpt = sorted((tmp_path / "run").glob("checkpoint-*.pt"))[-1]
    assert inspect_update.main(["--checkpoint", str(ckpt), "train.batch_episodes=4", "task.trials=5"]) == 0
    assert "add up to the total gradient" in capsys.readouterr().out
    assert inspect_update.main(["--checkpoint", str(tmp_path / "missing.pt")]) == 2


def test_histograms_of_weights_numpy_cannot_bin_are_left_out(tmp_path):
    """An absurd learning rate (the fuzz test's train.lr=4.6e14) leaves weights of one huge value or
    infinities: the run goes on, and the histograms it can draw are drawn."""
    from dist_vpg.config import LogConfig
    from dist_vpg.run_log import Board

    agent = Agent(5, 2, 4)
    with torch.no_grad():
        agent.lstm.weight_ih_l0.fill_(458259024733798.0)
        agent.lstm.weight_hh_l0.fill_(float("inf"))
    board = Board(tmp_path, LogConfig(progress="lines"), 10, enabled=True)
    board.histograms(1, agent)
    board.close()
    tags = _tags(tmp_path)
    assert "weights/policy.weight" in tags and "weights/lstm.weight_hh_l0" not in tags  # all infinite


def test_the_earlier_name_of_inspect_update_warns_and_is_the_same_command():
    import importlib
    import sys

    sys.modules.pop("dist_vpg.inspect", None)
    with pytest.warns(DeprecationWarning, match="dist_vpg.inspect_update"):
        old = importlib.import_module("dist_vpg.inspect")
    assert old.main is inspect_update.main


@pytest.mark.slow
def test_python_m_dist_vpg_inspect_still_runs_and_says_the_new_name():
    import subprocess
    import sys

    args = ["--config", SMOKE, "train.batch_episodes=4", "task.trials=5"]
    done = subprocess.run([sys.executable, "-m", "dist_vpg.inspect", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "dist_vpg.inspect is now dist_vpg.inspect_update" in done.stderr
    assert "add up to the total gradient for every parameter" in done.stdout
