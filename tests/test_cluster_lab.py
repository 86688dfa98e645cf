"""The reduce-strategy lab: emulated nodes come and go cleanly, links are shaped, and the quick runs of
bench_cluster, cost_model and bench_link_learning write what they promise (shape, not timings)."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cost_model import agent_shapes, powersgd_floats
from benchmarks.emulated import rate_bits

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def needs_namespaces():
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        pytest.skip("emulated nodes need root and iproute2")


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def run(script: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"benchmarks/{script}.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def report(path: Path, name: str) -> dict:
    data = json.loads((path / f"{name}.json").read_text())
    if data["note"].startswith("skipped:"):
        pytest.skip(data["note"])
    assert (path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    return data


def test_rates_and_wire_sizes():
    assert rate_bits("100mbit") == 1e8 and rate_bits("2.5gbit") == 2.5e9
    with pytest.raises(ValueError, match="kbit, mbit or gbit"):
        rate_bits("fast")
    floats = sum(__import__("math").prod(s) for s in agent_shapes(48))
    assert floats == 10707  # the default agent, as bench_sync counts it
    assert 1000 < powersgd_floats(48) < floats / 5  # rank-2 factors of the two LSTM matrices, the rest whole


def test_emulated_nodes_are_removed_when_interrupted():
    needs_namespaces()
    code = (
        "import time\n"
        "from benchmarks.emulated import EmulatedCluster\n"
        "with EmulatedCluster(2, tag='t77') as c:\n"
        "    c.shape('10mbit')\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        pytest.skip(f"could not build emulated nodes: {proc.stderr.read()[-500:]}")
    assert "dvpgt77n0" in namespaces()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert "dvpgt77n" not in namespaces()
    links = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert "dvbt77" not in links and "dvt77h" not in links


def test_quick_cluster_lab_and_cost_model(tmp_path):
    needs_namespaces()
    proc = run("bench_cluster", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = report(tmp_path, "bench_cluster")["rows"]
    assert {
        "nodes",
        "ranks_per_node",
        "bandwidth",
        "link_mbit_s",
        "strategy",
        "median_ms",
        "rel_error",
    } <= set(rows[0])
    assert {r["strategy"] for r in rows} >= {"allreduce", "hierarchical", "ddp_powersgd", "local_sgd"}
    shaped = next(r["link_mbit_s"] for r in rows if r["bandwidth"] == "100mbit")
    unshaped = next(r["link_mbit_s"] for r in rows if r["bandwidth"] == "unshaped")
    assert shaped < 110 and unshaped > 2 * shaped  # the shaping took hold, and only where asked
    assert "|" in proc.stdout and "namespace" not in namespaces().replace("dvpg", "")

    proc = run(
        "cost_model",
        "--measured", str(tmp_path / "bench_cluster.json"),
        "--held-out-bandwidths", "unshaped",
        "--held-out-hidden", "0",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = report(tmp_path, "cost_model")["rows"]
    fits = [r for r in model if r["kind"] == "fit"]
    assert len(fits) == len({r["strategy"] for r in rows} - {"floor_1_float"})
    assert all(min(r["call_us"], r["beta"], r["gamma_ns_per_float"]) >= 0 for r in fits)
    checks = [r for r in model if r["kind"] == "check"]
    assert any(r["held_out"] for r in checks) and all(r["predicted_ms"] > 0 for r in checks)
    assert {r["ranks"] for r in model if r["kind"] == "extrapolated"} == {16, 64, 256, 1024}


def test_quick_learning_over_a_shaped_link(tmp_path):
    needs_namespaces()
    proc = run("bench_link_learning", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = report(tmp_path, "bench_link_learning")["rows"]
    assert [r["strategy"] for r in rows] == ["allreduce", "local_sgd sync.period=8"]
    for r in rows:
        assert r["final"]["episodes"] == 200 and r["curve"][-1]["update"] == 40


class _ScriptedNodes:
    """Stands in for EmulatedCluster: node i runs scripts[i] in a shell instead of launch.sh."""

    def __init__(self, scripts):
        self.scripts = scripts
        self.nodes = [type("Node", (), {"address": "127.0.0.1", "device": "lo"})() for _ in scripts]

    def command(self, index, cmd):
        return ["sh", "-c", self.scripts[index]]


def test_a_dead_node_stops_the_job_at_once_and_a_start_up_death_is_retried_once(tmp_path, capsys):
    from benchmarks import bench_link_learning as bench

    # node 1 dies at once while node 0 would wait 10 minutes for it: both attempts fail fast
    nodes = _ScriptedNodes(["sleep 600", "echo gloo abort; exit 134"])
    args = type("Args", (), {"config": "c.yaml", "updates": 1, "eval_every": 1, "eval_episodes": 1})()
    with pytest.raises(RuntimeError, match=r"node 1 failed \(exit 134\) \d+ s after the start:\ngloo abort"):
        bench.train(nodes, "allreduce", 0, args, tmp_path / "run", 29900)
    assert "during start-up: starting the job again on another port" in capsys.readouterr().out
    # both nodes finish well: no restart
    assert bench.train(_ScriptedNodes(["true", "true"]), "allreduce", 0, args, tmp_path / "run", 29900) == 0
