"""Every command refuses alike: one line on rank 0, exit status 2, never a traceback or a usage dump;
under torchrun too."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dist_vpg import config, settings, tasks
from dist_vpg.config import printable

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = str(ROOT / "pretrained" / "bandit_independent.pt")
CHECKPOINT_TWO_STEP = str(ROOT / "pretrained" / "two_step.pt")


def refused(*args: str, stdin=subprocess.DEVNULL, ranks: int = 0) -> str:
    """Run `python -m args` (under torchrun with `ranks` ranks if given); the one line it refused with."""
    launcher = [sys.executable, "-m"]
    if ranks:
        launcher += ["torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), "-m"]
    proc = subprocess.run(
        [*launcher, *args], cwd=ROOT, stdin=stdin, capture_output=True, text=True, timeout=300
    )
    ours = [line for line in proc.stderr.strip().splitlines() if line.startswith(f"{args[0]}: ")]
    # torchrun reports a failed child with a traceback of its own; none may pass through our code
    assert proc.returncode != 0
    assert "/dist_vpg/" not in "".join(
        line for line in proc.stderr.splitlines() if line.strip().startswith("File ")
    )
    if not ranks:
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert len(ours) == 1, proc.stderr[-3000:]  # rank 0 alone says it
    return ours[0]


@pytest.mark.parametrize(
    "args, says",
    [
        (["dist_vpg.train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["dist_vpg.evaluate"], "the following arguments are required: --checkpoint"),
        (["dist_vpg.evaluate", "--checkpoint", CHECKPOINT, "--episodes", "1"], "must be at least 2, not 1"),
        (["dist_vpg.evaluate", "--checkpoint", CHECKPOINT, "--episodes", "many"], "not a whole number"),
        (["dist_vpg.evaluate", "--checkpoint", CHECKPOINT, "--seed", "-1"], "a seed lies in [0, 2**63)"),
        (["dist_vpg.evaluate", "--checkpoint", CHECKPOINT, "--episodes", str(10**15)], "GiB, but"),
        (["dist_vpg.evaluate", "--checkpoint", CHECKPOINT, "train.lr=1"], "only task.* keys"),
        (["dist_vpg.inspect_update", "--seed", str(2**64)], "a seed lies in [0, 2**63)"),
        (
            ["dist_vpg.inspect_update", "--checkpoint", CHECKPOINT, "--config", "configs/smoke.yaml"],
            "exclude each other",
        ),
        (["dist_vpg.play", "--seed", "☃"], "not a whole number"),
        (["dist_vpg.play", "--task", "chess"], "--task chess: must be one of bandit, two_step"),
        (["dist_vpg.play", "--task", "json:loads"], "json:loads is not a task"),
        (
            ["dist_vpg.play", "--task", "bandit", "--checkpoint", CHECKPOINT_TWO_STEP],
            "an agent of the two_step task",
        ),
        (["dist_vpg.play"], "standard input ended before the first choice"),
    ],
)
@pytest.mark.slow
def test_each_command_refuses_in_one_line(args, says):
    line = refused(*args)
    assert line.startswith(f"{args[0]}: ") and says in line, line


@pytest.mark.slow
def test_play_with_standard_input_closed():
    proc = subprocess.run(
        f"{sys.executable} -m dist_vpg.play <&-",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("dist_vpg.play: standard input ended"), proc.stderr


@pytest.mark.dist
@pytest.mark.parametrize(
    "args, says",
    [
        (["dist_vpg.evaluate", "--checkpoint", "missing.pt"], "no such checkpoint"),
        (["dist_vpg.evaluate", "--checkpoint", CHECKPOINT, "--out", "/proc/x"], "--out: cannot write into"),
        (["dist_vpg.evaluate", "--checkpoint", CHECKPOINT, "--seed", "x"], "not a whole number"),
        (["dist_vpg.train", "train.lr=nan"], "train.lr: must be a finite number"),
    ],
)
def test_refusals_under_torchrun_are_said_once(args, says):
    line = refused(*args, ranks=2)
    assert says in line, line


@pytest.mark.slow
def test_a_tracker_address_that_cannot_be_bound_is_one_line(tmp_path):
    """Found by tests/test_fuzz.py: the server's own process used to print a traceback first."""
    for host, why in (
        ("1", "Cannot assign requested address"),
        ("λ", ""),
        ("\x80", "encoding of hostname failed"),
    ):
        line = refused(
            "dist_vpg.train", f"tracker.host={host}", "train.updates=1", f"run_dir={tmp_path / 'run'}"
        )
        shown = printable(host)  # a character that does not print is shown escaped, on the one line
        assert line.startswith(f"dist_vpg.train: tracker cannot listen on {shown}:0: {why}"), line


def help_of(module: str) -> str:
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_train_help_lists_every_setting_with_type_default_and_meaning():
    """Generated from the definitions: every key of the schema and of every task, each on one line
    with its type, its default and a meaning; each task's own keys under that task."""
    text = help_of("dist_vpg.train")
    wanted = [d for d in settings.describe(config.Config) if not d.key.startswith("task.")]
    top = {d.key for d in wanted if "." not in d.key}  # seed, run_dir, curriculum
    assert top == {"seed", "run_dir", "curriculum"}
    rows = {}
    for line in text.splitlines():
        parts = line.split(maxsplit=3)
        if line.startswith("  ") and parts and ("." in parts[0] or parts[0] in top):
            rows.setdefault(parts[0], []).append(parts)
    for d in wanted:
        (row,) = rows[d.key]
        assert row[1] == d.type and len(row) == 4 and row[3].strip(), row
    for name, unit in tasks.TASKS.items():
        block = text.split(f"task.name={name} ")[1].split("task.name=")[0]
        for d in settings.describe(unit.Settings, "task."):
            if d.key not in ("task.name", "task.trials", "task.trial_input"):
                assert f"  {d.key} " in block and d.meaning in block, (name, d.key)
        assert f"(task.trials default {unit.Settings().trials})" in text
    assert "task.name=module:Class" in text


@pytest.mark.slow
def test_evaluate_help_lists_the_task_settings_it_takes():
    text = help_of("dist_vpg.evaluate")
    assert "train.lr " not in text and "--show-config" in text
    for unit in tasks.TASKS.values():
        for d in settings.describe(unit.Settings, "task."):
            assert f"  {d.key} " in text, d.key


@pytest.mark.slow
def test_show_config_prints_what_the_run_would_use_and_starts_nothing(tmp_path):
    args = [
        "--config",
        "configs/two_step.yaml",
        "train.lr=0.002",
        f"run_dir={tmp_path / 'run'}",
        "--show-config",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "dist_vpg.train", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown == config.to_dict(
        config.load("configs/two_step.yaml", ["train.lr=0.002", f"run_dir={tmp_path / 'run'}"])
    )
    assert shown["task"]["name"] == "two_step" and "arms" not in shown["task"]
    assert not (tmp_path / "run").exists()
    # and a setting the run would refuse is refused, in one line
    assert "task.arms: the two_step task has no such key" in refused(
        "dist_vpg.train", "--config", "configs/two_step.yaml", "task.arms=3", "--show-config"
    )
