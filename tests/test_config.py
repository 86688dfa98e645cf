import subprocess
import sys
from pathlib import Path

import pytest

from dist_vpg import config
from dist_vpg.config import ConfigError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


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


def test_impossible_combinations():
    with pytest.raises(ConfigError, match="^task.distribution"):
        config.load(None, ["task.arms=3", "task.distribution=hard"])
    with pytest.raises(ConfigError, match="^sync.strategy"):
        config.load(None, ["sync.strategy=ddp", "train.rollout=onepass"])
    with pytest.raises(ConfigError, match="^train.batch_episodes"):
        config.check_world(config.load(None, ["train.batch_episodes=5"]), 2)


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


def test_cli_refuses_bad_config_in_one_line_before_any_process_group(tmp_path):
    run_dir = tmp_path / "never"
    proc = subprocess.run(
        [sys.executable, "-m", "dist_vpg.train", "train.lr=fast", f"run_dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.lr" in lines[0], proc.stderr
    assert not run_dir.exists()


def test_roundtrip_through_dict():
    cfg = config.load(None, ["task.name=two_step", "train.lr=0.002"])
    assert config.from_dict(config.to_dict(cfg)) == cfg
