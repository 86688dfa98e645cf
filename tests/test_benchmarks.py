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
        ("bench_restart", {"checkpoint_ms", "to_resume_s", "to_first_update_s", "resumed_from"}),
        ("bench_tasks", {"task", "mode", "steps_per_s", "x_twopass"}),
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
    assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "|" in proc.stdout  # the table
