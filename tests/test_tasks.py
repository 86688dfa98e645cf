import numpy as np
import pytest
import torch

from dist_vpg import noise
from dist_vpg.tasks import Bandit, TwoStep, make_task
from dist_vpg.tasks import settings as task_settings


def _u(shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "distribution,levels", [("easy", {0.1, 0.9}), ("medium", {0.25, 0.75}), ("hard", {0.4, 0.6})]
)
def test_dependent_sets(distribution, levels):
    probs = Bandit(2, distribution).reset(_u((4000, 2))).probs
    assert set(np.round(probs[:, 0].double().numpy(), 6).tolist()) == levels
    assert torch.allclose(probs.sum(1), torch.ones(4000))
    assert abs((probs[:, 0] < 0.5).float().mean().item() - 0.5) < 0.03


def test_independent_and_dependent_uniform():
    ind = Bandit(3, "independent").reset(_u((5000, 3))).probs
    assert ind.shape == (5000, 3) and abs(ind.mean().item() - 0.5) < 0.01
    assert abs(torch.corrcoef(ind.T)[0, 1].item()) < 0.05
    dep = Bandit(2, "dependent").reset(_u((5000, 2))).probs
    assert torch.allclose(dep.sum(1), torch.ones(5000)) and abs(dep[:, 0].mean().item() - 0.5) < 0.01


def test_bandit_rewards_and_regret():
    task = Bandit(2)
    state = task.reset(torch.tensor([[0.2, 0.7]]).expand(20000, 2))
    action = torch.tensor([0, 1]).repeat(10000)
    step = task.step(state, action, _u((20000, 1)))
    assert step.reward.shape == (20000,) and step.obs.shape == (20000, 0)
    assert abs(step.reward[action == 0].mean().item() - 0.2) < 0.015
    assert abs(step.reward[action == 1].mean().item() - 0.7) < 0.015
    assert torch.allclose(step.regret[action == 0], torch.tensor(0.5))
    assert torch.all(step.regret[action == 1] == 0)


def test_two_step_dynamics():
    task = TwoStep()
    n = 40000
    state = task.reset(torch.zeros(n, 1))  # u < 0.5: state 1 is the good one
    assert torch.all(state.good == 1)
    action = torch.zeros(n, dtype=torch.long)
    step = task.step(state, action, _u((n, 3)))
    reached = step.obs.argmax(1)
    assert torch.allclose(step.obs.sum(1), torch.ones(n))
    assert abs((reached == 0).float().mean().item() - 0.8) < 0.01  # common transition of action 0
    assert torch.equal(step.state.common, reached == 0)
    assert abs(step.reward[reached == 1].mean().item() - 0.9) < 0.015
    assert abs(step.reward[reached == 0].mean().item() - 0.1) < 0.01
    assert abs((step.state.good == 0).float().mean().item() - 0.025) < 0.004
    # Action 1 leads commonly to the good state: 0.8*0.9 + 0.2*0.1 = 0.74 against 0.26.
    assert torch.allclose(step.regret, torch.tensor(0.48))


def test_step_advances_every_episode_in_one_call():
    for task in (make_task(task_settings("bandit")), make_task(task_settings("two_step"))):
        draws = noise.draw(
            0, noise.TRAIN, 0, np.arange(64), task.trials, task.episode_draws, task.trial_draws
        )
        state = task.reset(draws.episode)
        step = task.step(state, torch.zeros(64, dtype=torch.long), draws.trial[0])
        assert step.reward.shape == (64,) and step.regret.shape == (64,)
        assert step.obs.shape == (64, task.obs_size)


def test_bad_bandit_is_refused():
    with pytest.raises(ValueError, match="2 arms"):
        Bandit(3, "easy")


def _informative_reference(u_target: float, actions: list[int], arms: int = 11) -> list[tuple[float, float]]:
    """Dependent arms II written out for one episode: (reward, regret) of each pull."""
    ordinary = arms - 1
    target = min(int(u_target * ordinary), ordinary - 1)
    out = []
    for a in actions:
        pays = 5.0 if a == target else (target + 1) / ordinary if a == ordinary else 1.0
        out.append((pays, 5.0 - pays))
    return out


def test_informative_arms_follow_the_rules_of_a_plain_loop():
    task = make_task(task_settings("informative_arms"))
    assert (task.num_actions, task.trials, task.obs_size, task.max_reward) == (11, 5, 0, 5.0)
    u = _u((400, 1), seed=3)
    state = task.reset(u)
    actions = torch.randint(0, 11, (5, 400), generator=torch.Generator().manual_seed(4))
    got = []
    for t in range(5):
        step = task.step(state, actions[t], torch.zeros(400, 1))
        state = step.state
        got.append(torch.stack([step.reward, step.regret], 1))
    got = torch.stack(got, 1)  # [400, 5, 2]
    for b in range(400):
        want = _informative_reference(u[b, 0].item(), actions[:, b].tolist())
        np.testing.assert_allclose(got[b].numpy(), np.array(want), atol=1e-6)
    targets = state.target.numpy()
    assert set(targets.tolist()) == set(range(10))  # every ordinary arm is a target sometimes
    assert state.payouts[np.arange(400), -1].mul(10).round().long().sub(1).tolist() == targets.tolist()


def test_informative_arms_need_three_arms():
    from dist_vpg import config

    with pytest.raises(config.ConfigError, match="^task.arms: informative_arms needs"):
        config.from_dict({}, ["task.name=informative_arms", "task.arms=2"])
