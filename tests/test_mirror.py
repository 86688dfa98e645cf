"""train.mirror: odd episodes play the arm-swapped mirror of the even ones before them. An agent
and its mirror image (the same weights with the arms' rows and columns swapped) then play each
other's episodes exactly, arm for arm. (2 ranks reproduce 1 with mirrors: tests/test_train.py.)"""

import numpy as np
import pytest
import torch

from dist_vpg import config, noise
from dist_vpg.agent import Agent
from dist_vpg.rollout import act, input_size
from dist_vpg.tasks import make_task
from dist_vpg.tasks import settings as task_settings


def mirror_image(agent: Agent, arms: int) -> Agent:
    """The agent with the arms reversed: its one-hot action inputs and its policy's rows."""
    twin = Agent(agent.lstm.input_size, arms, agent.hidden)
    twin.load_state_dict(agent.state_dict())
    with torch.no_grad():
        twin.lstm.weight_ih_l0[:, :arms] = agent.lstm.weight_ih_l0[:, :arms].flip(1)
        twin.policy.weight.copy_(agent.policy.weight.flip(0))
        twin.policy.bias.copy_(agent.policy.bias.flip(0))
    return twin


@pytest.mark.parametrize(
    "keys", [dict(), dict(arms=3), dict(distribution="dependent"), dict(distribution="easy")]
)
def test_a_mirror_episode_is_played_as_the_mirror_image(keys):
    task = make_task(task_settings(**keys))
    torch.manual_seed(0)
    agent = Agent(input_size(task, True), task.num_actions, 16)
    with torch.no_grad():
        agent.policy.weight.normal_(0, 1.0)
    draws = noise.draw(0, noise.TRAIN, 2, np.arange(64), task.trials, task.episode_draws, task.trial_draws)
    paired = noise.with_mirrors(draws, task.mirror)
    even, odd = (
        noise.Noise(paired.episode[i::2], paired.trial[:, i::2], paired.action[:, i::2]) for i in (0, 1)
    )
    assert torch.equal(even.episode, draws.episode[0::2]) and torch.equal(odd.trial, even.trial)
    probs = task.reset(even.episode).probs, task.reset(odd.episode).probs
    assert torch.allclose(probs[1], probs[0].flip(1), atol=1e-6, rtol=0)  # the same task, arms reversed
    with torch.inference_mode():
        original = act(agent, task, even, True, with_values=False)
        mirrored = act(mirror_image(agent, task.num_actions), task, odd, True, with_values=False)
    parted = (mirrored.actions != task.num_actions - 1 - original.actions).any(0)
    assert parted.sum() <= 1  # only where a uniform falls within rounding of a CDF boundary
    keep = ~parted
    assert torch.equal(mirrored.rewards[:, keep], original.rewards[:, keep])
    assert torch.allclose(mirrored.regrets[:, keep], original.regrets[:, keep])


def test_mirror_is_refused_where_it_cannot_hold():
    with pytest.raises(config.ConfigError, match="train.mirror: the two_step task has no arm-swapped mirror"):
        config.load(None, ["task.name=two_step", "train.mirror=true"])
    with pytest.raises(config.ConfigError, match="cannot also group episodes by task"):
        config.load(None, ["train.mirror=true", "train.episodes_per_task=2"])
    cfg = config.load(None, ["train.mirror=true", "train.batch_episodes=6"])
    with pytest.raises(config.ConfigError, match="an odd number cannot hold whole pairs"):
        config.check_world(cfg, 2)
