"""launch.sh turns its environment (and SLURM's) into the right torchrun command (DRY_RUN=1)."""

import os
import subprocess
from pathlib import Path

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


def test_one_node_is_standalone(tmp_path):
    a = args(dry(tmp_path))
    assert a[:3] == ["--standalone", "--nproc_per_node", "2"]
    assert a[-3:] == ["-m", "dist_vpg.train", "seed=3"]


def test_static_rendezvous(tmp_path):
    a = args(
        dry(
            tmp_path, NNODES="2", NODE_RANK="1", MASTER_ADDR="10.0.0.5", MASTER_PORT="29511", MAX_RESTARTS="3"
        )
    )
    joined = " ".join(a)
    assert "--nnodes 2 --node-rank 1 --master-addr 10.0.0.5 --master-port 29511" in joined
    assert "--max-restarts 3" in joined and "--standalone" not in a


def test_c10d_rendezvous(tmp_path):
    a = " ".join(args(dry(tmp_path, NNODES="4", RDZV_ENDPOINT="head:29400", RDZV_ID="job7")))
    assert "--nnodes 4 --rdzv-backend c10d --rdzv-endpoint head:29400 --rdzv-id job7" in a


def test_slurm_variables(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text("#!/bin/sh\necho node-a\necho node-b\n")
    (fake / "scontrol").chmod(0o755)
    env = dict(SLURM_JOB_ID="9", SLURM_JOB_NUM_NODES="2", SLURM_NODEID="1", SLURM_JOB_NODELIST="node-[a-b]")
    a = " ".join(args(dry(tmp_path, PATH=f"{fake}:{os.environ['PATH']}", **env)))
    assert "--nnodes 2 --node-rank 1 --master-addr node-a --master-port 29500" in a


def test_several_nodes_without_an_address_is_one_clear_line(tmp_path):
    done = dry(tmp_path, NNODES="2", NODE_RANK="0")
    assert done.returncode != 0
    assert "NNODES=2 needs MASTER_ADDR" in done.stderr and "Traceback" not in done.stderr
