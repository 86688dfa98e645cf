import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from dist_vpg import checkpoint, config, memory, tasks
from dist_vpg.config import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("**/*.yaml"))


def test_shipped_configs_load():
    names = {p.name for p in CONFIGS}
    assert {"bandit_independent.yaml", "bandit_dependent.yaml", "two_step.yaml", "smoke.yaml"} <= names
    for path in CONFIGS:
        config.load(path)


def test_default_config_is_bandit_independent():
    assert config.load(None) == config.load(Path(__file__).parent.parent / "configs/bandit_independent.yaml")


def test_dotted_overrides_are_typed():
    cfg = config.load(None, ["train.lr=0.001", "task.name=two_step", "seed=3", "train.rollout=onepass"])
    assert cfg.train.lr == 0.001 and cfg.task.name == "two_step" and cfg.seed == 3
    assert isinstance(cfg.train.updates, int)


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.lrr=1", "train.lrr"),
        ("bogus=1", "bogus"),
        ("train.lr=fast", "train.lr"),
        ("train.updates=2.5", "train.updates"),
        ("train.updates=0", "train.updates"),
        ("train.batch_episodes=-4", "train.batch_episodes"),
        ("task.name=chess", "task.name"),
        ("sync.strategy=carrier_pigeon", "sync.strategy"),
        ("train.gamma=1.5", "train.gamma"),
        ("train.gamma_final=1.5", "train.gamma_final"),
        ("train.value_scale=maybe", "train.value_scale"),
        ("train.lr=inf", "train.lr"),  # passes "> 0": finite is checked everywhere first
        ("train.gamma=nan", "train.gamma"),
        ("train.beta_e_final=-inf", "train.beta_e_final"),
        ("train.lr=1e-5", "train.lr_final"),  # below the default schedule's end, 1e-4
        ("train.signal=reward_to_go", "train.signal"),
        ("train.episodes_per_task=0", "train.episodes_per_task"),
        ("train.episodes_per_task=3", "train.episodes_per_task"),  # 128 episodes are not groups of 3
        ("tracker.timeout_s=.inf", "tracker.timeout_s"),
        ("seed=1180591620717411303424", "seed"),  # 2**70: beyond what torch and the noise take
        ("eval.episodes=99999999999999999999999", "eval.episodes"),
        ("task.distribution=easy", None),  # fine with 2 arms
        ("train", "train"),
    ],
)
def test_bad_values_name_their_key(override, key):
    if key is None:
        config.load(None, [override])
        return
    with pytest.raises(ConfigError) as err:
        config.load(None, [override])
    message = str(err.value)
    assert message.startswith(key) and "\n" not in message


@pytest.mark.parametrize(
    "overrides,says",
    [
        (["task.name=informative_arms", "task.informative_scale=0"], "task.informative_scale: must be > 0"),
        (["task.name=informative_arms", "task.arms=2"], "task.arms: informative_arms needs 2 ordinary"),
        (["task.name=restless", "task.drift_high=1.5"], "task.drift_high: must lie in [0, 1]"),
        (["task.name=restless", "task.volatile_share=-0.1"], "task.volatile_share: must lie in [0, 1]"),
        (["task.name=two_step", "task.swap_prob=2"], "task.swap_prob: must lie in [0, 1]"),
        (["task.name=harlow", "task.objects=1"], "task.objects: must be >= 2"),
        (["task.name=harlow", "task.trials=0"], "task.trials: must be >= 1"),
        (["task.name=harlow", "task.features=many"], "task.features: Value 'many'"),
        (["task.name=nope.module:Task"], "task.name: cannot import 'nope.module'"),
        (["task.name=json:nothing"], "task.name: 'json' has no 'nothing'"),
        (["task.name=json:loads"], "task.name: json:loads is not a task"),
        (["task=3"], "task: must be a mapping"),
    ],
)
def test_each_tasks_own_values_are_checked_in_one_line(overrides, says):
    with pytest.raises(ConfigError) as err:
        config.load(None, overrides)
    assert str(err.value).startswith(says) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_a_task_name_alone_gives_that_tasks_own_defaults(name):
    cfg = config.load(None, [f"task.name={name}"])
    assert cfg.task == tasks.TASKS[name].Settings() and type(cfg.task) is tasks.TASKS[name].Settings
    config.check_world(cfg, 2)  # and they run


def test_the_papers_defaults():
    informative = config.load(None, ["task.name=informative_arms"]).task
    assert (informative.arms, informative.trials, informative.informative_scale) == (11, 5, 1.0)
    harlow = config.load(None, ["task.name=harlow"]).task
    assert (harlow.trials, harlow.objects, harlow.features, harlow.fixation) == (6, 1000, 8, True)
    assert tasks.make_task(harlow).trials == 12  # a fixation step before each of the 6 choices
    two_step = config.load(None, ["task.name=two_step"]).task
    assert (two_step.common_prob, two_step.reward_high, two_step.swap_prob) == (0.8, 0.9, 0.025)


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_a_key_the_task_does_not_have_is_refused_naming_key_task_and_its_keys(name):
    own = [f.name for f in dataclasses.fields(tasks.TASKS[name].Settings)]
    others = {f.name for unit in tasks.TASKS.values() for f in dataclasses.fields(unit.Settings)} - set(own)
    for key in sorted(others) + ["trails"]:
        with pytest.raises(ConfigError) as err:
            config.load(None, [f"task.name={name}", f"task.{key}=1"])
        assert str(err.value) == f"task.{key}: the {name} task has no such key; its keys: {', '.join(own)}"
    # the same from a config file: its task section belongs to the task it names
    with pytest.raises(ConfigError, match="^task.distribution: the two_step task has no such key"):
        config.load("configs/bandit_dependent.yaml", ["task.name=two_step"])


def test_checkpoints_of_the_flat_format_load_onto_their_task():
    """Checkpoints written before each task had its own settings hold every task's keys."""
    flat = dict(
        name="harlow", trials=6, trial_input=True, arms=2, distribution="independent", common_prob=0.8,
        reward_high=0.9, reward_low=0.1, swap_prob=0.025, informative_scale=1.0, drift_low=0.02,
        drift_high=0.2, volatile_share=0.5, objects=1000, features=8, fixation=True,
    )  # fmt: skip
    cfg = checkpoint.trained_config({"task": flat})
    assert cfg.task == tasks.settings("harlow", trials=6, objects=1000, features=8, fixation=True)
    # before task.fixation existed, Harlow had no fixation step
    older = {k: v for k, v in flat.items() if k != "fixation"}
    assert checkpoint.trained_config({"task": older}).task.fixation is False
    # and every shipped agent's stored config maps onto its task with the values it was trained on
    for path in sorted(Path("pretrained").glob("*.pt")):
        stored = checkpoint.load(path)["config"]["task"]
        cfg = checkpoint.trained_config(checkpoint.load(path)["config"])
        had = {**checkpoint.ADDED_LATER["task"], **stored}  # keys added later: the value every run had
        assert {k: had[k] for k in config.to_dict(cfg)["task"]} == config.to_dict(cfg)["task"], path
    # a key no task ever had is still refused
    with pytest.raises(ConfigError, match="^task.bogus: the harlow task has no such key"):
        checkpoint.trained_config({"task": dict(flat, bogus=1)})


def test_impossible_combinations():
    with pytest.raises(ConfigError, match="^task.distribution: 'hard' is defined for 2 arms only"):
        config.load(None, ["task.arms=3", "task.distribution=hard"])
    with pytest.raises(ConfigError, match="^sync.strategy"):
        config.load(None, ["sync.strategy=ddp", "train.rollout=onepass"])
    with pytest.raises(ConfigError, match=r"^train.lr_final: 0.0001 is above train.lr=1e-05: .* \(-1 keeps"):
        config.load(None, ["train.lr=1e-5"])
    assert config.load(None, ["train.lr=1e-5", "train.lr_final=-1"]).train.lr == 1e-5
    with pytest.raises(ConfigError, match="^train.batch_episodes"):
        config.check_world(config.load(None, ["train.batch_episodes=5"]), 2)
    with pytest.raises(ConfigError, match="^train.episodes_per_task: each of the 4 rank.* plays 4 episodes"):
        config.check_world(config.load(None, ["train.batch_episodes=16", "train.episodes_per_task=8"]), 4)


def test_memory_is_estimated_before_anything_is_allocated():
    cfg = config.load(None, ["train.batch_episodes=50000000"])
    with pytest.raises(ConfigError, match="^train.batch_episodes: .* need about .* GiB per rank") as err:
        memory.check_memory(cfg, 1, 1, available=24 * 2**30)
    assert "24.0 GiB is available" in str(err.value) and "\n" not in str(err.value)
    # the default needs well under the 400 MB a rank may take beyond its own footprint
    default = config.load(None)
    assert memory.rollout_bytes(default, 2) - memory.BASE_BYTES < 400 * 2**20
    memory.check_memory(default, 2, 2, available=2 * 2**30)
    # ranks on one node share its memory: what fits one rank may not fit eight
    big = config.load(None, ["train.batch_episodes=8192"])
    memory.check_memory(big, 1, 1, available=4 * 2**30)
    with pytest.raises(ConfigError, match="for the 8 on this node"):
        memory.check_memory(big, 1, 8, available=4 * 2**30)
    # the periodic evaluation's results too, unless there is no periodic evaluation
    with pytest.raises(
        ConfigError, match=r"^eval.episodes: 1000000000 evaluation episodes keep about 838.2 GiB"
    ):
        memory.check_memory(config.load(None, ["eval.episodes=1000000000"]), 1, 1, available=24 * 2**30)
    memory.check_memory(config.load(None, ["eval.episodes=1000000000", "eval.every=0"]), 1, 1, 24 * 2**30)
    # a huge agent or a huge number of arms is caught too, not only a huge batch
    for override in ("agent.hidden=200000", "task.arms=50000000"):
        with pytest.raises(ConfigError, match="GiB per rank"):
            memory.check_memory(config.load(None, [override]), 1, 1, available=24 * 2**30)


@pytest.mark.slow
def test_cli_refuses_a_batch_beyond_the_machine_in_one_line(tmp_path):
    line = cli_refusal(tmp_path, "train.batch_episodes=50000000")
    assert "train.batch_episodes" in line and "GiB" in line


def test_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.yaml")


def cli_refusal(tmp_path, override: str) -> str:
    """Run the train command with one override that must be refused: exit status 2, one line on
    stderr (returned), and no run directory made."""
    run_dir = tmp_path / "never"
    proc = subprocess.run(
        [sys.executable, "-m", "dist_vpg.train", override, f"run_dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert not run_dir.exists()
    return lines[0]


@pytest.mark.slow
def test_cli_refuses_bad_config_in_one_line_before_any_process_group(tmp_path):
    assert "train.lr" in cli_refusal(tmp_path, "train.lr=fast")
    # once trained for 11 updates of NaN gradients before a traceback
    assert cli_refusal(tmp_path, "train.lr=inf").endswith("train.lr: must be a finite number (got inf)")


def test_roundtrip_through_dict():
    cfg = config.load(None, ["task.name=two_step", "train.lr=0.002"])
    assert config.from_dict(config.to_dict(cfg)) == cfg


def test_a_control_character_in_a_key_is_shown_escaped_on_one_line():
    """Found by fuzzing: \\x1e is a line break to str.splitlines."""
    with pytest.raises(config.ConfigError) as e:
        config.load(None, ["train.\x1e=1"])
    message = str(e.value)
    assert message.splitlines() == [message] and "train.\\x1e" in message


def test_a_key_written_twice_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  lr: 0.01\n  lr: 0.02\n")
    with pytest.raises(ConfigError, match="line 3 .*'lr' is written twice"):
        config.load(path)


def test_hierarchical_nodes_larger_than_the_job_are_refused():
    cfg = config.load(None, ["sync.strategy=hierarchical", "sync.node_size=3", "train.batch_episodes=6"])
    with pytest.raises(ConfigError, match="sync.node_size"):
        config.check_world(cfg, 2)
    config.check_world(cfg, 3)


def test_hierarchical_nodes_that_do_not_divide_the_job_are_refused():
    cfg = config.load(None, ["sync.strategy=hierarchical", "sync.node_size=2", "train.batch_episodes=12"])
    with pytest.raises(
        ConfigError, match=r"sync.node_size: 2 ranks per node does not divide the job's 3 ranks.*1, 3"
    ):
        config.check_world(cfg, 3)
    config.check_world(cfg, 4)
    config.check_world(config.load(None, ["sync.strategy=hierarchical", "train.batch_episodes=12"]), 3)


def test_every_setting_says_what_it_is():
    """Each key's meaning is in its definition (`settings.setting`): none is left without one."""
    from dist_vpg import settings, tasks

    found = settings.describe(config.Config) + [
        d for unit in tasks.TASKS.values() for d in settings.describe(unit.Settings, "task.")
    ]
    assert len(found) > 60 and all(d.meaning for d in found), [d.key for d in found if not d.meaning]
