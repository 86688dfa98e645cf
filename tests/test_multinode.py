"""A real 2-node job on one machine: two network namespaces joined by a veth pair, each with its own
address, one launch.sh (torchrun) per namespace, gloo and the tracker going over the veth link."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.fixture
def two_hosts():
    """[(namespace, address, interface)] for node 0 and node 1, removed afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = f"{os.getpid() % 100000}"
    hosts = [(f"dvpg{tag}n{i}", f"10.231.{os.getpid() % 250}.{i + 1}", f"dv{tag}e{i}") for i in range(2)]
    made = []
    try:
        for ns, _, _ in hosts:
            if sh("ip", "netns", "add", ns).returncode != 0:
                pytest.skip(f"this machine does not permit network namespaces (ip netns add {ns} failed)")
            made.append(ns)
        (ns0, a0, e0), (ns1, a1, e1) = hosts
        steps = [
            ["ip", "link", "add", e0, "type", "veth", "peer", "name", e1],
            ["ip", "link", "set", e0, "netns", ns0],
            ["ip", "link", "set", e1, "netns", ns1],
        ]
        for ns, addr, dev in hosts:
            steps += [
                ["ip", "netns", "exec", ns, "ip", "addr", "add", f"{addr}/24", "dev", dev],
                ["ip", "netns", "exec", ns, "ip", "link", "set", dev, "up"],
                ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
            ]
        for step in steps:
            done = sh(*step)
            if done.returncode != 0:
                pytest.skip(f"cannot build the veth link ({' '.join(step)}: {done.stderr.strip()})")
        yield hosts
    finally:
        for ns in made:
            sh("ip", "netns", "delete", ns)


def launch(ns: str, node_rank: int, master: str, dev: str, run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, NNODES="2", NODE_RANK=str(node_rank), MASTER_ADDR=master, MASTER_PORT="29533")
    env.update(NPROC="1", GLOO_SOCKET_IFNAME=dev)
    cmd = ["ip", "netns", "exec", ns, str(ROOT / "launch.sh"), *TRAIN, f"run_dir={run_dir}"]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.dist
def test_two_nodes_over_veth_match_one_node(two_hosts, tmp_path):
    (ns0, a0, e0), (ns1, _, e1) = two_hosts
    nodes = [launch(ns0, 0, a0, e0, tmp_path / "two"), launch(ns1, 1, a0, e1, tmp_path / "two")]
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
