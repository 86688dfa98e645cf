"""What `pip install .` gives: every subpackage, the native kernels' source, and the console commands."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("dist-vpg-train", "dist-vpg-evaluate", "dist-vpg-play", "dist-vpg-inspect")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the sources: setuptools leaves build/ behind where it builds."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "dist_vpg", source / "dist_vpg", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    cmd = [*pip, "-w", str(out), str(source)]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("dist_vpg-*.whl")
    return path


def test_the_wheel_holds_every_subpackage_and_the_kernels(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "train.py",
        "sync/__init__.py",
        "sync/local_sgd.py",
        "native/__init__.py",
        "native/kernels.c",
        "native/interface.h",
        "native/task.h",
        "tasks/bandit/step.c",
        "tasks/harlow.c",
        "tasks/restless/players.h",
        "noise.c",
    ):
        assert f"dist_vpg/{module}" in names, module
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{command} = " in text for command in COMMANDS), text


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_console_commands_are_the_module_commands(command):
    script = Path(sys.executable).parent / command
    if not script.exists():
        pytest.skip(f"{script} is not installed (run ./launch.sh setup)")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    module = command.removeprefix("dist-vpg-")
    assert f"python -m dist_vpg.{module}" in done.stdout  # the same parser as the module form
