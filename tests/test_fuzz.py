"""Property-based tests of the whole configuration schema with hostile values: every override is
either run or refused in one line naming a key, and nothing else is ever raised."""

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dist_vpg import config, memory, tasks
from dist_vpg.config import Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent


def schema(cls=Config, prefix="") -> dict[str, type]:
    """Every dotted key of the configuration and its type; the task's keys are every task's."""
    keys = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if f.name == "task" and cls is Config:
            for unit in tasks.TASKS.values():
                keys.update(schema(unit.Settings, "task."))
        elif dataclasses.is_dataclass(kind):
            keys.update(schema(kind, f"{prefix}{f.name}."))
        else:
            keys[f"{prefix}{f.name}"] = kind
    return keys


KEYS = schema()
# the tasks that have each task.* key
OWNERS = {
    key: [
        name
        for name, unit in tasks.TASKS.items()
        if key[5:] in {f.name for f in dataclasses.fields(unit.Settings)}
    ]
    for key in KEYS
    if key.startswith("task.")
}
HOSTILE = [
    "", "nan", "inf", "-inf", "1e309", "-1", "0", "-0.0", "1e-300", str(2**64), str(-(2**63) - 1),
    "99999999999999999999999", "true", "null", "~", "[1, 2]", "{a: 1}", "'quoted'", "λ", "☃☃",
    "\u200b", "x" * 300, "0x10", "1_000", "3.5", "1e3", "[]", "{}", "--", "=", "a=b", "\\n",
]  # fmt: skip


def value_for(kind) -> st.SearchStrategy[str]:
    """Text for a value of `kind`: a plausible one, or a hostile one."""
    plausible = {
        int: st.integers(-(2**70), 2**70).map(str),
        float: st.floats(allow_nan=True, allow_infinity=True).map(repr),
        bool: st.sampled_from(["true", "false", "yes", "1", "0"]),
        str: st.text(max_size=20),
    }.get(kind, st.text(max_size=20))
    return st.one_of(plausible, st.sampled_from(HOSTILE), st.text(max_size=12))


@st.composite
def overrides(draw, keys=tuple(KEYS)) -> list[str]:
    chosen = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True))
    found = [f"{key}={draw(value_for(KEYS[key]))}" for key in chosen]
    task_keys = [key for key in chosen if key in OWNERS and key != "task.name"]
    if task_keys and "task.name" not in chosen and draw(st.booleans()):  # often, a task that has it
        found.append(f"task.name={draw(st.sampled_from(OWNERS[task_keys[0]]))}")
    if draw(st.integers(0, 9)) == 0:  # now and then, a key that does not exist
        found.append(f"{draw(st.sampled_from(['train', 'nope', 'task.x']))}.{draw(st.text(max_size=5))}=1")
    return found


def names_a_key(message: str, given_overrides: list[str]) -> bool:
    """One line that begins with a key of the schema, or with (a prefix of) a key given."""
    named = message.split(":", 1)[0].strip()
    given = [config.printable(o.split("=", 1)[0]) for o in given_overrides]  # as messages show them
    return "\n" not in message and bool(named) and (named in KEYS or any(g.startswith(named) for g in given))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides())
def test_config_layer_accepts_or_refuses_in_one_line(drawn):
    try:
        cfg = config.load(None, drawn)
        config.check_world(cfg, 1)
        memory.check_memory(cfg, 1, 1, available=24 * 2**30)
    except ConfigError as e:
        assert names_a_key(str(e), drawn), str(e)


# Keys that set how long a run takes; the run test fixes them small and draws the rest.
SIZES = {
    "task.trials": "6",
    "agent.hidden": "8",
    "train.updates": "2",
    "train.batch_episodes": "4",
    "sync.accumulate": "1",
    "eval.every": "2",
    "eval.episodes": "4",
    "checkpoint.every": "1",
    "log.every": "1",
    "log.histograms_every": "1",
    "run_dir": "",
    "task.arms": "2",
}
RUN_KEYS = tuple(k for k in KEYS if k not in SIZES)


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("FUZZ_RUNS", "12")),  # more for a longer hunt: FUZZ_RUNS=200
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(overrides(RUN_KEYS))
def test_any_override_either_runs_or_is_refused_in_one_line(tmp_path_factory, drawn):
    assume(not any("\x00" in o for o in drawn))  # no command line can carry a NUL byte
    run_dir = tmp_path_factory.mktemp("fuzz") / "run"
    fixed = [f"{k}={v}" for k, v in SIZES.items() if k != "run_dir"] + [f"run_dir={run_dir}"]
    proc = subprocess.run(
        [sys.executable, "-m", "dist_vpg.train", *drawn, *fixed],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, (drawn, proc.stderr[-3000:])
    if proc.returncode == 0:
        assert "update 2/2" in proc.stdout or "updates of" in proc.stdout, drawn
    else:
        assert proc.returncode == 2, (drawn, proc.stderr[-3000:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dist_vpg.train: "), (drawn, proc.stderr)
