"""A real 2-node job on one machine: two network namespaces on a bridge (benchmarks/emulated.py), each
with its own address, one launch.sh (torchrun) per namespace, gloo and the tracker going over veth."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.emulated import EmulatedCluster, Unavailable

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["--config", "configs/smoke.yaml", "train.updates=12", "task.trials=30", "log.every=4"]
TRAIN += [
    "eval.every=6",
    "eval.episodes=40",
    "checkpoint.every=6",
    "cpu.affinity=none",
    "cpu.threads=1",
    "log.progress=lines",
]


@pytest.fixture
def two_hosts():
    """Two emulated nodes (network namespaces on a bridge), removed afterwards."""
    try:
        with EmulatedCluster(2) as cluster:
            yield cluster
    except Unavailable as e:
        pytest.skip(str(e))


def launch(cluster: EmulatedCluster, node_rank: int, run_dir: Path) -> subprocess.Popen:
    node = cluster.nodes[node_rank]
    env = dict(os.environ, NNODES="2", NODE_RANK=str(node_rank), MASTER_ADDR=cluster.nodes[0].address)
    env.update(MASTER_PORT="29533", NPROC="1", GLOO_SOCKET_IFNAME=node.device)
    cmd = cluster.command(node_rank, [str(ROOT / "launch.sh"), *TRAIN, f"run_dir={run_dir}"])
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.dist
def test_two_nodes_over_veth_match_one_node(two_hosts, tmp_path):
    nodes = [launch(two_hosts, 0, tmp_path / "two"), launch(two_hosts, 1, tmp_path / "two")]
    outs = [p.communicate(timeout=600)[0] for p in nodes]
    for p, out in zip(nodes, outs):
        assert p.returncode == 0, out[-3000:]
    assert "update 12/12" in outs[0]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["world_size"] == 2 and two["tracker"]["episodes_per_rank"] == {"0": 12 * 16, "1": 12 * 16}

    one = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + ["-m", "dist_vpg.train", *TRAIN, f"run_dir={tmp_path / 'one'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    ref = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert two["params_crc32"] == ref["params_crc32"]  # the same bits as one node with the same batch
