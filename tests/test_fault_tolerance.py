"""Interruptions: resume from checkpoints, a rank killed under torchrun --max-restarts, SIGTERM, a
hung rank, and checkpoints that must not be trusted."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from dist_vpg import checkpoint, validation
from tests.helpers import raised, run_ranks, train_worker

SMOKE = "configs/smoke.yaml"
QUICK = ["task.trials=30", "train.batch_episodes=16", "log.every=5", "eval.every=10", "eval.episodes=20"]


def train_once(run_dir, *overrides):
    (result,) = run_ranks(1, train_worker, SMOKE, [*QUICK, f"run_dir={run_dir}", *overrides])
    return result


@pytest.mark.slow
def test_resume_goes_on_exactly_where_the_run_stopped(tmp_path):
    common = ["checkpoint.every=10", "train.average=0.9"]  # the weights' average resumes too
    whole = train_once(tmp_path / "whole", "train.updates=40", *common)
    first = train_once(tmp_path / "split", "train.updates=20", *common)
    second = train_once(tmp_path / "split", "train.updates=40", *common, "train.resume=auto")
    assert raised(whole) is None and raised(first) is None and raised(second) is None, second
    assert second["resumed_from"] == 20 and second["last_update"] == 40
    assert second["params_crc32"] == whole["params_crc32"]
    averages = [checkpoint.load(checkpoint.existing(tmp_path / d)[-1])["average"] for d in ("whole", "split")]
    assert all(torch.equal(averages[0][k], averages[1][k]) for k in averages[0])
    # the tracker's count goes on from the checkpoint: every episode counted once
    assert second["tracker"]["episodes_total"] == whole["tracker"]["episodes_total"] == 40 * 16
    # eval.csv holds each evaluated update once, the same figures as the uninterrupted run
    rows = validation.read(tmp_path / "split" / validation.FILE)
    want = validation.read(tmp_path / "whole" / validation.FILE)
    assert [r["update"] for r in rows] == [10, 20, 30, 40]
    assert [r["regret"] for r in rows] == [r["regret"] for r in want]


@pytest.mark.slow
def test_resume_skips_a_damaged_checkpoint_with_a_warning(tmp_path, capfd):
    run_dir = tmp_path / "run"
    assert raised(train_once(run_dir, "train.updates=20", "checkpoint.every=10")) is None
    newest = checkpoint.existing(run_dir)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # a write cut short by a crash
    capfd.readouterr()
    result = train_once(run_dir, "train.updates=30", "checkpoint.every=10", "train.resume=auto")
    assert raised(result) is None and result["resumed_from"] == 10
    assert "skipping a damaged checkpoint" in capfd.readouterr().out


@pytest.mark.slow
def test_resume_refuses_another_tasks_checkpoint_and_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    assert raised(train_once(run_dir, "train.updates=10", "checkpoint.every=10")) is None
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    for other in (["task.distribution=medium"], ["agent.hidden=16"]):
        result = train_once(run_dir, "train.updates=20", "train.resume=auto", *other)
        assert (
            raised(result)[0] == "CheckpointError" and "resume with the run's own config" in raised(result)[1]
        )
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def torchrun(run_dir, *args, extra=(), max_restarts=0):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [f"--max-restarts={max_restarts}", *extra, "-m", "dist_vpg.train", "--config", SMOKE]
    cmd += [*QUICK, "cpu.affinity=none", "log.progress=lines", f"run_dir={run_dir}", *args]
    # as launch.sh does: without it a restarted group may read the dead group's addresses
    env = dict(os.environ, TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def worker(launcher: subprocess.Popen, rank: int) -> psutil.Process:
    """The training process of `rank` among torchrun's children."""
    for _ in range(600):
        for p in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if p.environ().get("RANK") == str(rank) and "dist_vpg.train" in " ".join(p.cmdline()):
                    return p
            except psutil.Error:
                pass
        time.sleep(0.1)
    raise AssertionError("no such worker")


def wait_for(path, launcher, timeout=300):
    for _ in range(int(timeout / 0.05)):
        if path.exists():
            return
        assert launcher.poll() is None, launcher.communicate()[0][-3000:]
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.dist
@pytest.mark.slow
def test_a_killed_rank_restarts_the_group_and_no_update_is_lost_or_repeated(tmp_path):
    args = ["train.updates=300", "checkpoint.every=20", "train.resume=auto"]
    whole = torchrun(tmp_path / "whole", *args)
    assert whole.wait(timeout=600) == 0, whole.communicate()[0][-3000:]
    job = torchrun(tmp_path / "killed", *args, max_restarts=1)
    wait_for(checkpoint.path_for(tmp_path / "killed", 60), job)
    victim = worker(job, 1)
    victim.send_signal(signal.SIGKILL)
    out = job.communicate(timeout=600)[0]
    assert job.returncode == 0, out[-3000:]
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["last_update"] == 300
    assert summary["resumed_from"] >= 60 and summary["resumed_from"] % 20 == 0, summary
    assert "resuming from" in out
    # the tracker, restored from the checkpoint, counted every update's episodes exactly once
    assert summary["tracker"]["episodes_total"] == 300 * 16
    ref = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["params_crc32"] == ref["params_crc32"]  # bit-identical to the uninterrupted run
    assert checkpoint.load(checkpoint.existing(tmp_path / "killed")[-1])["update"] == 300


@pytest.mark.dist
def test_sigterm_saves_a_final_checkpoint_and_exits_cleanly(tmp_path):
    job = torchrun(tmp_path / "run", "train.updates=100000", "checkpoint.every=50")
    wait_for(checkpoint.path_for(tmp_path / "run", 50), job)
    job.send_signal(signal.SIGTERM)
    out = job.communicate(timeout=120)[0]
    assert "stopped by a signal after update" in out, out[-3000:]
    # torchrun itself reports the signal it got with a traceback of its own; none of ours
    assert "dist_vpg/" not in "".join(line for line in out.splitlines() if line.startswith('  File "')), out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    last = summary["last_update"]
    assert last >= 50 and last % 10 == 0  # the ranks agree on a stop every STOP_POLL updates
    assert checkpoint.load(checkpoint.existing(tmp_path / "run")[-1])["update"] == last


@pytest.mark.dist
def test_a_hung_rank_is_named_when_the_collective_times_out(tmp_path):
    job = torchrun(tmp_path / "run", "train.updates=100000", "checkpoint.every=50", "sync.timeout_s=5")
    wait_for(checkpoint.path_for(tmp_path / "run", 50), job)
    hung = worker(job, 1)
    hung.suspend()  # SIGSTOP: alive, holding its sockets, answering nothing
    lines = []
    try:
        for line in job.stdout:
            lines.append(line)
            if "collective timed out" in line:
                break  # named: no need to wait for torchrun's 30 s grace on a stopped process
    finally:
        try:
            hung.kill()
        except psutil.NoSuchProcess:  # torchrun got there first
            pass
    lines += job.communicate(timeout=120)[0].splitlines(keepends=True)
    out = "".join(lines)
    assert job.returncode != 0
    assert "a collective timed out after 5 s (sync.timeout_s) waiting for rank 1 (" in out, out[-3000:]


def test_a_foreign_or_truncated_checkpoint_is_a_clear_error(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(checkpoint.CheckpointError, match="not a dist_vpg checkpoint"):
        checkpoint.load(foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": 1, "fn": os.system}, pickled)  # weights_only refuses arbitrary objects
    with pytest.raises(checkpoint.CheckpointError, match="not a readable"):
        checkpoint.load(pickled)
    with pytest.raises(checkpoint.CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")
