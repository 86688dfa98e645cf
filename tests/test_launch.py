"""launch.sh turns its environment (and SLURM's) into the right torchrun command (DRY_RUN=1)."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLEAN = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("SLURM_", "MASTER_", "NNODES", "NODE_RANK", "RDZV"))
}


def dry(tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "launch.sh"), "seed=3"],
        env={**CLEAN, "DRY_RUN": "1", "NPROC": "2", **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def args(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[1:]


@pytest.mark.slow
def test_one_node_is_standalone(tmp_path):
    a = args(dry(tmp_path))
    assert a[:3] == ["--standalone", "--nproc_per_node", "2"]
    assert a[-3:] == ["-m", "dist_vpg.train", "seed=3"]


@pytest.mark.slow
def test_static_rendezvous(tmp_path):
    a = args(
        dry(
            tmp_path, NNODES="2", NODE_RANK="1", MASTER_ADDR="10.0.0.5", MASTER_PORT="29511", MAX_RESTARTS="3"
        )
    )
    joined = " ".join(a)
    assert "--nnodes 2 --node-rank 1 --master-addr 10.0.0.5 --master-port 29511" in joined
    assert "--max-restarts 3" in joined and "--standalone" not in a


@pytest.mark.slow
def test_c10d_rendezvous(tmp_path):
    a = " ".join(args(dry(tmp_path, NNODES="4", RDZV_ENDPOINT="head:29400", RDZV_ID="job7")))
    assert "--nnodes 4 --rdzv-backend c10d --rdzv-endpoint head:29400 --rdzv-id job7" in a


@pytest.mark.slow
def test_slurm_variables(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text("#!/bin/sh\necho node-a\necho node-b\n")
    (fake / "scontrol").chmod(0o755)
    env = dict(SLURM_JOB_ID="9", SLURM_JOB_NUM_NODES="2", SLURM_NODEID="1", SLURM_JOB_NODELIST="node-[a-b]")
    a = " ".join(args(dry(tmp_path, PATH=f"{fake}:{os.environ['PATH']}", **env)))
    assert "--nnodes 2 --node-rank 1 --master-addr node-a --master-port 29500" in a


@pytest.mark.slow
def test_several_nodes_without_an_address_is_one_clear_line(tmp_path):
    done = dry(tmp_path, NNODES="2", NODE_RANK="0")
    assert done.returncode != 0
    assert "NNODES=2 needs MASTER_ADDR" in done.stderr and "Traceback" not in done.stderr


def launch(tmp_path, *argv, **env) -> subprocess.CompletedProcess:
    """./launch.sh as a user runs it (no DRY_RUN): the whole of what it prints."""
    return subprocess.run(
        [str(ROOT / "launch.sh"), *argv],
        env={**CLEAN, "NPROC": "2", **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )


def one_line(done: subprocess.CompletedProcess) -> str:
    """A refusal as the user sees it: exit status 2, nothing on stdout, one line on stderr."""
    assert done.returncode == 2 and done.stdout == "", (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "env, says",
    [
        ({"NPROC": "abc"}, "launch.sh: NPROC=abc: must be a whole number >= 1"),
        ({"NPROC": "0"}, "launch.sh: NPROC=0: must be a whole number >= 1"),
        ({"NPROC": "99999999999999999999"}, "launch.sh: NPROC=99999999999999999999: must be a whole number"),
        ({"NNODES": "two"}, "launch.sh: NNODES=two: must be a whole number >= 1"),
        ({"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "h"}, "launch.sh: NODE_RANK=2: must lie in 0..1"),
        ({"NNODES": "2", "NODE_RANK": "0"}, "launch.sh: NNODES=2 needs MASTER_ADDR"),
        ({"NNODES": "2", "MASTER_ADDR": "h"}, "launch.sh: NNODES=2 needs NODE_RANK"),
        ({"MASTER_PORT": "70000"}, "launch.sh: MASTER_PORT=70000: must lie in 1..65535"),
        ({"MAX_RESTARTS": "-1"}, "launch.sh: MAX_RESTARTS=-1: must be a whole number >= 0"),
        ({"NNODES": "2", "RDZV_ENDPOINT": "nohost"}, "launch.sh: RDZV_ENDPOINT=nohost: must be host:port"),
    ],
)
@pytest.mark.slow
def test_bad_launch_variables_are_one_line(tmp_path, env, says):
    assert one_line(launch(tmp_path, "seed=1", **env)).startswith(says)


@pytest.mark.parametrize(
    "argv, env, says",
    [
        (["train.lr=fast"], {}, "dist_vpg.train: config error: train.lr: Value 'fast'"),
        (
            ["task.name=bandit", "task.drift_low=0.5"],
            {},
            "dist_vpg.train: config error: task.drift_low: the bandit",
        ),
        # against the world launch.sh starts: 2 ranks on each of 2 nodes
        (
            ["train.batch_episodes=6"],
            {"NNODES": "2", "NODE_RANK": "0", "MASTER_ADDR": "127.0.0.1"},
            "dist_vpg.train: config error: train.batch_episodes: 6 episodes do not split evenly over 4 ranks",
        ),
        (["--no-such-flag"], {}, "dist_vpg.train: unrecognized arguments: --no-such-flag"),
    ],
)
@pytest.mark.slow
def test_a_configuration_refused_before_torchrun_starts_is_one_line(tmp_path, argv, env, says):
    assert one_line(launch(tmp_path, *argv, **env)).startswith(says)


@pytest.mark.dist
def test_a_ranks_refusal_is_its_one_line_without_torchruns_report(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint-00000200.pt").write_bytes(
        (ROOT / "pretrained" / "bandit_independent.pt").read_bytes()
    )
    line = one_line(launch(tmp_path, "--config", str(ROOT / "configs/smoke.yaml"), f"run_dir={run_dir}"))
    assert line.startswith(f"dist_vpg.train: config error: run_dir: {run_dir} already holds checkpoints")


@pytest.mark.dist
def test_a_rank_that_crashes_still_shows_its_traceback_and_torchruns_report(tmp_path):
    # rank 1 crashes while rank 0 waits (two ranks writing one traceback each would interleave)
    crashing = [
        "import os, time",
        'if os.environ["RANK"] == "1":',
        '    raise RuntimeError("this rank crashed")',
    ]
    (tmp_path / "crashing.py").write_text("\n".join([*crashing, "time.sleep(60)", ""]))
    done = launch(tmp_path, DIST_VPG_MODULE="crashing", PYTHONPATH=str(tmp_path))
    assert done.returncode not in (0, 2)
    assert done.stderr.count("RuntimeError: this rank crashed") == 1, done.stderr  # the rank's own traceback
    assert "ChildFailedError" in done.stderr and "exitcode  : 1" in done.stderr


@pytest.mark.slow
def test_help_and_show_config_need_no_ranks(tmp_path):
    done = launch(tmp_path, "--help", NPROC="abc-is-not-read")
    assert done.returncode == 2  # NPROC is still checked first
    done = launch(tmp_path, "--show-config", "task.name=two_step")
    assert done.returncode == 0 and "name: two_step" in done.stdout and done.stderr == ""
    done = launch(tmp_path, "--help")
    assert done.returncode == 0 and "task.name=harlow" in done.stdout
