"""The sweep command: settings x seeds trained a job at a time, evaluated beside the optimum on the
same episodes, and an interrupted sweep going on where it stopped."""

import json

import pytest

from dist_vpg import sweep
from dist_vpg.config import ConfigError

SMOKE = "configs/smoke.yaml"


def test_every_config_grid_value_and_seed_is_one_run():
    runs = sweep.plan_runs(
        [SMOKE], ["sync.accumulate=1,2", "train.lr=0.001,0.002"], ["train.updates=5"], [0, 1]
    )
    assert len(runs) == 8 and len({run.directory(sweep.Path("out")) for run in runs}) == 8
    assert runs[0].setting == "smoke sync.accumulate=1 train.lr=0.001"
    assert runs[0].arguments() == [
        "--config",
        SMOKE,
        "sync.accumulate=1",
        "train.lr=0.001",
        "train.updates=5",
        "seed=0",
    ]


@pytest.mark.parametrize(
    "grid,fixed,key",
    [
        (["sync.accumulate"], [], "--grid"),
        (["sync.accumulate=1,x"], [], "sync.accumulate"),  # every run's config is checked first
        ([], ["run_dir=/tmp/x"], "run_dir"),
        (["seed=1,2"], [], "seed"),
    ],
)
def test_an_ill_formed_sweep_is_refused_before_anything_runs(grid, fixed, key):
    with pytest.raises(ConfigError, match=key):
        sweep.plan_runs([SMOKE], grid, fixed, [0])


def test_jobs_are_pinned_to_the_cores_the_sweep_may_use(tmp_path, monkeypatch):
    """Under `taskset -c 1` (or a cgroup's cpuset) the jobs go to core 1, not to core 0 which the
    trainer would refuse as unavailable."""

    class Done:
        returncode = 0

        def poll(self):
            return 0

    started = []
    monkeypatch.setattr(sweep.os, "sched_getaffinity", lambda pid: {1, 3})
    monkeypatch.setattr(sweep, "start_job", lambda run, out, nproc, cores: started.append(cores) or Done())
    monkeypatch.setattr(sweep, "POLL_S", 0)
    runs = sweep.plan_runs([SMOKE], [], ["train.updates=5"], [0, 1, 2])
    sweep.train_all(runs, tmp_path, jobs=2, nproc=1, say=lambda line: None)
    assert started == ["1", "3", "1"]
    started.clear()
    sweep.train_all(runs, tmp_path, jobs=1, nproc=2, say=lambda line: None)
    assert started == ["1,3"] * 3


@pytest.mark.dist
def test_a_sweep_trains_evaluates_and_goes_on_after_an_interruption(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--out", str(out), "--config", SMOKE, "--grid", "sync.accumulate=1,2", "--seeds", "0"]
    argv += ["--set", "train.updates=6", "--set", "eval.every=0", "--eval-seeds", "5", "6"]
    argv += ["--eval-episodes", "200", "--jobs", "2"]
    assert sweep.main(argv) == 0
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [row["setting"] for row in rows] == ["smoke sync.accumulate=1", "smoke sync.accumulate=2"]
    assert [row["episodes"] for row in rows] == [6 * 32, 6 * 64]
    for row in rows:
        assert len(row["gaps"]) == 2 and all(g["gap_sem"] > 0 for g in row["gaps"])
        # the gap is the agent's regret less the optimum's on the same episodes
        mean_gap = sum(g["gap"] for g in row["gaps"]) / 2
        assert mean_gap == pytest.approx(row["regret"][0] - row["optimum"], abs=1e-4)
    capsys.readouterr()

    # interrupted: one run lost its summary, and with it one evaluation; the rest is kept
    first = sweep.Run(
        SMOKE, ("sync.accumulate=1", "train.updates=6", "eval.every=0"), ("sync.accumulate=1",), 0
    )
    (first.directory(out) / "summary.json").unlink()
    (first.directory(out) / "sweep_eval_valid_5_200.json").unlink()
    assert sweep.main(argv) == 0
    said = capsys.readouterr().out
    assert "1 of 2 runs already finished; training 1" in said and "1 evaluation(s)" in said
    again = json.loads((out / "sweep.json").read_text())["rows"]
    assert again[1] == rows[1] and again[0]["gaps"] == rows[0]["gaps"]  # the resumed run changed nothing

    # another seed on its own: the table keeps seed 0's runs beside it
    assert sweep.main([*argv[:7], "1", *argv[8:]]) == 0  # --seeds 1
    assert "the table also holds 2 finished run(s)" in capsys.readouterr().out
    wider = json.loads((out / "sweep.json").read_text())["rows"]
    assert [row["seeds"] for row in wider] == [[0, 1], [0, 1]]
    assert [row["regret"][0] for row in wider] == [row["regret"][0] for row in again]


def test_a_kept_run_of_other_settings_is_refused_not_taken_for_finished(tmp_path):
    """A run left in DIR by a sweep with another --set would be taken for finished (or resumed) as it
    is; one that differs only in what the sweep sets itself is the same run."""
    import dataclasses

    from dist_vpg import config

    (kept,) = sweep.plan_runs([SMOKE], [], ["train.lr=0.001"], [0])
    trained = config.load(SMOKE, ["train.lr=0.001", "seed=0", "cpu.affinity=[1]"])
    kept.directory(tmp_path).mkdir(parents=True)
    (kept.directory(tmp_path) / "config.yaml").write_text(
        config.to_yaml(dataclasses.replace(trained, run_dir=str(kept.directory(tmp_path))))
    )
    sweep.check_kept([kept], tmp_path)  # the same settings: kept, and gone on from
    other = sweep.plan_runs([SMOKE], [], ["train.lr=0.002"], [0])
    assert other[0].directory(tmp_path) == kept.directory(tmp_path)
    with pytest.raises(ConfigError, match=r"train\.lr 0\.001 there, 0\.002 here\): use another --out"):
        sweep.check_kept(other, tmp_path)
    command = ["--out", str(tmp_path), "--config", SMOKE, "--set", "train.lr=0.002", "--seeds", "0"]
    assert sweep.main(command) == 2
