"""agent.reward_scale: the previous reward enters the agent's input multiplied by it, alike natively
and on the torch path; what a trial pays, and so every regret and loss, is unchanged; checkpoints
record it and those from before load at 1."""

import pytest
import torch

from dist_vpg import checkpoint, config, native
from dist_vpg.rollout import act, agent_for
from dist_vpg.tasks import make_task
from tests.test_native import TASKS, _setup, first_disagreements

needs_native = pytest.mark.skipif(native.available() is not None, reason="native rollout unavailable")


def _reward_column(task) -> int:
    return task.obs_size + task.num_actions  # after the observation and the one-hot action


@needs_native
@pytest.mark.parametrize("name", ["independent", "informative_arms_stage1", "harlow_fixation"])
def test_native_and_torch_scale_the_reward_input_alike(name):
    task, agent, draws = _setup(TASKS[name], batch=256)
    agent.reward_scale = 10.0
    episodes, _, worst = first_disagreements(agent, task, draws, TASKS[name].trial_input)
    assert worst < 1e-5 and episodes <= 2
    played = native.act(agent, task, draws, TASKS[name].trial_input)
    column = _reward_column(task)
    assert torch.equal(played.inputs[1:, :, column], 10.0 * played.rewards[:-1])
    assert played.rewards.abs().max() > 0  # the check above can fail: rewards were paid


def test_the_scale_changes_the_input_and_nothing_the_task_pays():
    task, agent, draws = _setup(TASKS["informative_arms"], batch=64)
    with torch.inference_mode():
        plain = act(agent, task, draws, True, with_values=False)
        agent.reward_scale = 3.0
        scaled = act(agent, task, draws, True, with_values=False)
    column = _reward_column(task)
    assert torch.equal(scaled.inputs[1:, :, column], 3.0 * scaled.rewards[:-1])
    assert not torch.equal(plain.inputs, scaled.inputs)
    # the first trial's actions come before any reward is seen: the same in both
    assert torch.equal(plain.actions[0], scaled.actions[0]) and torch.equal(
        plain.rewards[0], scaled.rewards[0]
    )


def test_the_setting_reaches_the_agent_and_is_refused_when_not_positive():
    cfg = config.load(None, ["task.name=informative_arms", "agent.reward_scale=10"])
    assert agent_for(cfg, make_task(cfg.task)).reward_scale == 10.0
    for bad in ("0", "-1", "nan"):
        with pytest.raises(config.ConfigError, match="agent.reward_scale"):
            config.load(None, [f"agent.reward_scale={bad}"])


def test_a_checkpoint_from_before_the_setting_loads_at_one():
    data = config.to_dict(config.load(None, []))
    del data["agent"]["reward_scale"]
    assert checkpoint.trained_config(data).agent.reward_scale == 1.0
