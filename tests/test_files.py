"""Paths that cannot hold a run's files, and a disk that fills during a run: one line, exit status 2,
nothing half-written, and a run that goes on once space is freed."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from dist_vpg import checkpoint

ROOT = Path(__file__).resolve().parent.parent
TINY = ["task.trials=10", "agent.hidden=8", "train.batch_episodes=4", "eval.every=0", "tracker.enabled=false"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return lines[0]


def unusable_dirs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a_file").write_text("not a directory")
    return {
        "a regular file": tmp_path / "a_file",
        "below a regular file": tmp_path / "a_file" / "run",
        "a virtual filesystem": Path("/proc/dist_vpg_run"),
        "a read-only filesystem": Path("/sys/dist_vpg_run"),
    }


@pytest.mark.slow
def test_run_dir_that_cannot_hold_files_is_one_line(tmp_path):
    for what, path in unusable_dirs(tmp_path).items():
        line = one_line(run("dist_vpg.train", *TINY, "train.updates=1", f"run_dir={path}"))
        assert line.startswith("dist_vpg.train: config error: run_dir: cannot write into"), (what, line)
        assert str(path) in line, what
    assert (tmp_path / "a_file").read_text() == "not a directory"  # left as it was


@pytest.mark.slow
def test_evaluate_out_that_cannot_hold_files_is_one_line_before_any_episode(tmp_path):
    done = run("dist_vpg.train", *TINY, "train.updates=1", f"run_dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    trained = checkpoint.existing(tmp_path / "run")[-1]
    for what, path in unusable_dirs(tmp_path).items():
        proc = run("dist_vpg.evaluate", "--checkpoint", str(trained), "--episodes", "8", "--out", str(path))
        line = one_line(proc)
        assert line.startswith("dist_vpg.evaluate: --out: cannot write into"), (what, line)
        assert proc.stdout == "", what  # refused before any figure was computed


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs of our own (skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip() or made.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_resume_goes_on(small_disk):
    run_dir = small_disk / "run"
    args = [*TINY, "agent.hidden=48", "train.updates=40", "checkpoint.every=2", "eval.every=5"]
    args += ["eval.episodes=8", "log.progress=lines", "train.average=0", f"run_dir={run_dir}"]
    ballast = small_disk / "ballast"
    free = subprocess.run(["df", "-B1", "--output=avail", str(small_disk)], capture_output=True, text=True)
    # Room for two checkpoints of this agent (about 90 kB each without a weight average) and the
    # small files, not for a third: the write of update 6 fails while 2 and 4 are on disk.
    ballast.write_bytes(b"\0" * (int(free.stdout.split()[-1]) - 250_000))

    full = run("dist_vpg.train", *args, "train.resume=auto")
    line = one_line(full)
    assert "No space left on device" in line and "train.resume=auto" in line, line
    newest = checkpoint.existing(run_dir)[-1]
    assert f"newest complete checkpoint is {newest}" in line, line
    assert not list(run_dir.rglob("*.tmp"))
    for path in checkpoint.existing(run_dir):
        checkpoint.load(path)  # every checkpoint left is complete
    with open(run_dir / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["regret"]) >= 0 for r in rows)  # whole rows only

    ballast.unlink()
    again = run("dist_vpg.train", *args, "train.resume=auto")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from {newest}" in again.stdout
    assert checkpoint.load(checkpoint.existing(run_dir)[-1])["update"] == 40
    with open(run_dir / "eval.csv", newline="") as f:
        assert [int(r["update"]) for r in csv.DictReader(f)] == list(range(5, 45, 5))


@pytest.mark.slow
def test_a_full_disk_stops_tensorboard_with_a_warning_not_a_hang(small_disk):
    """TensorBoard's files are a view of the run: they stop, the run goes on until a checkpoint
    cannot be written either (tensorboardX's own writer thread died there and blocked the run)."""
    run_dir = small_disk / "run"
    free = subprocess.run(["df", "-B1", "--output=avail", str(small_disk)], capture_output=True, text=True)
    (small_disk / "ballast").write_bytes(b"\0" * (int(free.stdout.split()[-1]) - 40_000))
    args = [*TINY, "train.updates=300", "log.every=1", "log.histograms_every=1", "checkpoint.every=1000"]
    proc = run("dist_vpg.train", *args, "log.progress=lines", f"run_dir={run_dir}", timeout=120)
    assert proc.stdout.count("TensorBoard logging stopped (No space left on device)") == 1
    assert "update 300/300" in proc.stdout  # trained to the end after TensorBoard stopped
    line = one_line(proc)
    assert "checkpoint-00000300.pt (No space left on device); no checkpoint is complete yet" in line


@pytest.mark.slow
def test_a_disk_full_from_the_start_is_one_line(small_disk):
    free = subprocess.run(["df", "-B1", "--output=avail", str(small_disk)], capture_output=True, text=True)
    (small_disk / "ballast").write_bytes(b"\0" * int(free.stdout.split()[-1]))
    line = one_line(run("dist_vpg.train", *TINY, "train.updates=2", f"run_dir={small_disk / 'run'}"))
    assert "cannot write" in line and "No space left on device" in line, line
    assert not list(small_disk.rglob("*.tmp"))
