"""Curricula (dist_vpg.curriculum): stages in the configuration or declared by a task, refused in one
line when ill-formed, trained through in one run that checkpoints, logs and resumes inside them."""

import json
import shutil

import pytest

from dist_vpg import checkpoint, config, curriculum, tasks, validation
from dist_vpg.config import ConfigError
from dist_vpg.tasks import Bandit
from tests.helpers import raised, run_ranks, train_worker
from tests.tensorboard_reader import read_tags

SMOKE = "configs/smoke.yaml"


class StagedBandit(Bandit):
    """The bandit with a curriculum of its own: easy arms first, for at most a quarter of the run."""

    curriculum = (
        {"set": {"task.distribution": "easy", "train.beta_e": 0.2}, "share": 0.25, "until_regret": 5.0},
        {"set": {"train.beta_e": 0.02}},
    )


@pytest.fixture
def staged(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, "staged_bandit", StagedBandit)
    return "task.name=staged_bandit"


def test_a_tasks_own_curriculum_is_the_default_and_sets_what_the_config_leaves_unset(staged):
    cfg = config.load(None, [staged, "task.distribution=medium", "train.updates=1000", "eval.every=100"])
    first, last = curriculum.stages(cfg.curriculum)
    # task.distribution was given, so the task's stage leaves it as configured, and says so
    assert first == curriculum.Stage({"train.beta_e": 0.2}, 250, 5.0, ("task.distribution",))
    assert "(the task's stage would also set task.distribution: as configured)" in first.describe()
    assert last == curriculum.Stage({"train.beta_e": 0.02}, None, None)
    assert config.at_stage(cfg, first).train.beta_e == 0.2 and cfg.train.beta_e == 0.05
    # a level no validation looks at within the stage is the task's to drop, not a refusal
    unlooked = config.load(None, [staged, "train.updates=1000", "eval.every=0"])
    (short, _) = curriculum.stages(unlooked.curriculum)
    assert short.until_regret is None and short.updates == 250
    assert config.load(None, [staged, "curriculum=none"]).curriculum == []
    assert config.load(None, []).curriculum == []  # a task without one: trained from the start


def test_stages_written_in_the_config_set_their_keys_over_it_and_show_in_show_config(tmp_path):
    path = tmp_path / "staged.yaml"
    path.write_text(
        "train:\n  lr: 0.002\ncurriculum:\n"
        "  - set: {task: {distribution: easy}, train.lr: 0.005}\n    updates: 300\n"
        "  - {}\n"
    )
    cfg = config.load(path, ["train.updates=1000"])
    first, last = curriculum.stages(cfg.curriculum)
    assert first.settings == {"task.distribution": "easy", "train.lr": 0.005} and first.updates == 300
    staged = config.at_stage(cfg, first)
    assert (staged.task.distribution, staged.train.lr, staged.curriculum) == ("easy", 0.005, [])
    assert config.at_stage(cfg, last).train.lr == 0.002
    shown = config.to_yaml(cfg)
    assert "task.distribution: easy" in shown and "updates: 300" in shown
    assert config.from_dict(config.to_dict(cfg)).curriculum == cfg.curriculum  # as a checkpoint keeps it


@pytest.mark.parametrize(
    "stages, says",
    [
        ("3", "curriculum: must be task, none or a list of stages"),
        ("[{set: {task.arms: 3}, updates: 10}, {}]", "its task has num_actions=3, the run's 2"),
        ("[{set: {task.nope: 1}, updates: 10}, {}]", "curriculum stage 1: task.nope: the bandit task has no"),
        ("[{set: {task.name: two_step}, updates: 10}, {}]", "1.set.task.name: a stage trains the run's task"),
        ("[{set: {train.batch_episodes: 8}, updates: 10}, {}]", "1.set.train.batch_episodes: a stage sets"),
        ("[{set: {train.lr: -1}, updates: 10}, {}]", "curriculum stage 1: train.lr: must be > 0"),
        ("[{updates: 10, until: 3}, {}]", "no such key; a stage has set, updates, share, until_regret"),
        ("[{set: {}}, {}]", "curriculum stage 1: give it a length"),
        ("[{updates: 10}, {updates: 10}]", "curriculum stage 2.updates: the last stage trains the rest"),
        ("[{share: 1.5}, {}]", "curriculum stage 1.share: must lie in (0, 1)"),
        ("[{updates: 100}, {}]", "its stages before the last take 100 of the run's 100 updates"),
        ("[{updates: 60, until_regret: -1}, {}]", "stage 1.until_regret: must be a regret >= 0"),
        ("[{updates: 60, until_regret: 2}, {until_regret: 1}]", "stage 2.until_regret: the last stage"),
        ("[{updates: 20, until_regret: 2}, {}]", "is looked at by the periodic validation, every eval.every"),
        ("[{updates: 10}]", "needs at least two stages"),
    ],
)
def test_an_ill_formed_curriculum_is_refused_in_one_line_naming_where(stages, says):
    with pytest.raises(ConfigError) as e:
        config.load(None, ["train.updates=100", "eval.every=50", f"curriculum={stages}"])
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_checkpoint_from_before_curricula_loads_as_trained_in_one_stage():
    data = config.to_dict(config.load(None, ["task.name=harlow"]))
    assert data["curriculum"]  # harlow declares one: a new run trains through it
    del data["curriculum"]
    assert checkpoint.trained_config(data).curriculum == []


def test_the_papers_harder_tasks_bring_their_curricula():
    harlow = curriculum.stages(config.load(None, ["task.name=harlow"]).curriculum)
    assert harlow[0].settings["task.fixation"] is False and "task.fixation" not in harlow[-1].settings
    informative = curriculum.stages(config.load(None, ["task.name=informative_arms"]).curriculum)
    assert informative[0].settings["task.informative_scale"] == 5.0
    assert "task.informative_scale" not in informative[-1].settings


def test_a_tasks_training_keys_hold_where_the_config_leaves_them_unset(tmp_path, monkeypatch):
    informative = config.load(None, ["task.name=informative_arms"])
    assert informative.train.updates == 40000  # InformativeArms.training: the run's length
    assert config.load(None, ["task.name=harlow"]).train.updates == 48000  # Harlow.training
    assert [s.updates for s in curriculum.stages(informative.curriculum)] == [20000, None]
    assert config.load(None, ["task.name=informative_arms", "train.updates=1000"]).train.updates == 1000
    assert informative.agent.reward_scale == 10.0  # an agent.* key too
    assert config.load(None, ["task.name=informative_arms", "agent.reward_scale=1"]).agent.reward_scale == 1.0
    path = tmp_path / "short.yaml"
    path.write_text("task: {name: informative_arms}\ntrain: {updates: 800}\n")
    assert config.load(path).train.updates == 800
    assert config.load(None, []).train.updates == config.TrainConfig().updates  # the bandit sets none
    # the bandit's recipe: a sync.* key too, and a schedule that would shrink the rounds left out
    default = config.load(None, [])
    assert (default.train.beta_e_final, default.sync.accumulate_final) == (0.003, 3)
    assert config.load(None, ["task.name=two_step"]).sync.accumulate_final == 0
    assert config.load(None, ["sync.accumulate=2"]).sync.accumulate_final == 3
    assert config.load(None, ["sync.accumulate=4"]).sync.accumulate_final == 0
    assert config.load(None, ["sync.accumulate_final=0"]).sync.accumulate_final == 0
    # a checkpoint's configuration is every key given: the task's keys change nothing in it
    assert config.from_dict(config.to_dict(config.load(path))).train.updates == 800

    class Odd(Bandit):
        training = {"train.updates": 50, "train.nope": 1}

    monkeypatch.setitem(tasks.TASKS, "odd", Odd)
    with pytest.raises(
        ConfigError,
        match=r"^task odd: its training keys \['train.nope'\] are not train\.\*, agent\.\* or sync\.\* keys$",
    ):
        config.load(None, ["task.name=odd"])


# A stage ended by its level at the first validation (update 10: every regret is below 100), the
# second for the rest of the run.
STAGED = [
    "task.trials=30", "train.batch_episodes=16", "log.every=5", "eval.every=10", "eval.episodes=20",
    "checkpoint.every=10", "train.updates=40",
    "curriculum=[{set: {task.distribution: medium, train.lr: 0.002}, updates: 30, until_regret: 100}, "
    "{set: {train.beta_e: 0.01}}]",
]  # fmt: skip


@pytest.mark.slow
def test_a_run_trains_through_its_stages_and_shows_them(tmp_path, capfd):
    (summary,) = run_ranks(1, train_worker, SMOKE, [*STAGED, f"run_dir={tmp_path}"])
    assert raised(summary) is None, summary
    assert summary["curriculum"] == [
        {"stage": 1, "start": 0, "end": 10, "ended_by": "level"},
        {"stage": 2, "start": 10, "end": 40},
    ]
    out = capfd.readouterr().out
    assert "curriculum stage 1 of 2 from update 0: task.distribution=medium train.lr=0.002" in out
    assert "curriculum stage 2 of 2 from update 10: train.beta_e=0.01; the rest of the run" in out
    assert "update 5/40 | stage 1/2 |" in out and "update 40/40 | stage 2/2 |" in out
    assert "eval 10 (stage 1):" in out and "eval 20 (stage 2):" in out
    rows = validation.read(tmp_path / validation.FILE)
    assert [(r["update"], r["stage"]) for r in rows] == [(10, 1), (20, 2), (30, 2), (40, 2)]
    # every checkpoint holds the stage it goes on in; from update 10 on, the second
    for path in checkpoint.existing(tmp_path):
        state = checkpoint.load(path)
        assert state["curriculum"]["index"] == (1 if state["update"] >= 10 else 0)
    assert json.loads((tmp_path / "summary.json").read_text())["curriculum"] == summary["curriculum"]
    assert "curriculum/stage" in read_tags(tmp_path / "tb")


def keeping_every_checkpoint(path, overrides):
    checkpoint.KEEP = 1000
    return train_worker(path, overrides)


@pytest.mark.slow
def test_a_resumed_run_goes_on_inside_its_stage_exactly(tmp_path):
    """From the checkpoint at a stage's boundary and from one inside the last stage, the resumed run
    lands on the uninterrupted run's bits."""
    (whole,) = run_ranks(1, keeping_every_checkpoint, SMOKE, [*STAGED, f"run_dir={tmp_path / 'whole'}"])
    assert raised(whole) is None, whole
    for update in (10, 20):
        split = tmp_path / f"from{update}"
        split.mkdir()
        shutil.copy(checkpoint.path_for(tmp_path / "whole", update), split)
        (resumed,) = run_ranks(1, train_worker, SMOKE, [*STAGED, f"run_dir={split}", "train.resume=auto"])
        assert raised(resumed) is None and resumed["resumed_from"] == update, resumed
        assert resumed["params_crc32"] == whole["params_crc32"]
        assert resumed["curriculum"] == whole["curriculum"]
