"""The benchmarks' --quick modes run end to end and write what they promise (shape, not timings)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "name,per_row",
    [
        ("bench_rollout", {"batch", "mode", "steps_per_s", "of_bound"}),
        ("bench_sync", {"world_size", "strategy", "median_ms", "x_floor"}),
        ("bench_scaling", {"mode", "ranks", "efficiency", "sync_share"}),
        ("bench_learning", {"ranks", "reached_target", "train_s", "curve"}),
        ("bench_batch", {"batch", "reached", "updates", "noise_scale", "curve"}),
        ("bench_restart", {"checkpoint_ms", "to_resume_s", "to_first_update_s", "resumed_from"}),
        ("bench_tasks", {"task", "mode", "steps_per_s", "x_twopass"}),
        ("bench_projection", {"kind", "ranks", "global_batch", "updates", "update_s"}),
        ("bench_kernels", {"batch", "base_ms", "variant_ms", "ratio", "split_ms", "one_call_ms"}),
    ],
)
def test_quick_mode_writes_table_json_and_plot(tmp_path, name, per_row):
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{name}.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / f"{name}.json").read_text())
    assert report["benchmark"] == name and report["provenance"]["torch"] and report["provenance"]["cores"]
    assert report["rows"] and all(per_row <= set(row) for row in report["rows"])
    assert all(row.get("steps_per_s", 1) > 0 and row.get("median_ms", 1) > 0 for row in report["rows"])
    if name == "bench_rollout":  # the one call training makes beside the three DDP's strategies make
        assert {row["mode"] for row in report["rows"]} == {"native", "native_autograd", "twopass", "onepass"}
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "|" in proc.stdout  # the table


def test_scale_figure_plots_each_runs_end_point(tmp_path):
    specs = []
    for i, (steps, wall, regret) in enumerate([(1e8, 300.0, 1.95), (2e8, 610.0, 1.90)]):
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({"agent_steps": steps, "wall_s": wall}))
        (run / "metrics.json").write_text(
            json.dumps({"agent": {"regret_at_end": regret, "regret_sem": 0.02}})
        )
        specs.append(f"setting {i}={run}={run / 'metrics.json'}")
    out = tmp_path / "scale.png"
    done = subprocess.run(
        [sys.executable, "benchmarks/scale_figure.py", "--out", str(out), *specs],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run(
        [sys.executable, "benchmarks/scale_figure.py", "--out", str(out), "no-run-dir"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "expected LABEL=RUN_DIR=METRICS_JSON" in bad.stderr


def test_the_projection_is_the_fit_times_the_update():
    """bench_projection's arithmetic: S(B) from the fit, times one rank's update plus the sync."""
    from benchmarks.bench_projection import projected, sync_seconds

    fit = {"s_min": 600.0, "b_crit": 240.0}
    row = projected(4, fit, 60, compute_s=0.01, sync_s=0.002)
    assert row["global_batch"] == 240 and row["updates"] == pytest.approx(1200.0)
    assert row["wall_s"] == pytest.approx(1200 * 0.012)
    cost = ROOT / "benchmarks/results/cost_model.json"
    assert sync_seconds(cost, "allreduce", 1, 8, 9.4e9, 50e-6) == 0.0
    one_node, two_nodes = (sync_seconds(cost, "allreduce", n, 8, 9.4e9, 50e-6) for n in (8, 16))
    assert 0 < one_node < two_nodes  # more ranks, more ring steps
