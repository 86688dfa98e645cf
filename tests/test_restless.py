"""Restless bandits: the task's rules, the exact filter and its players, and the Rescorla-Wagner fit."""

import math

import numpy as np
import pytest
import torch

from dist_vpg import native, noise
from dist_vpg.checkpoint import load_agent
from dist_vpg.tasks import RestlessBandit, make_task
from dist_vpg.tasks import settings as task_settings
from dist_vpg.tasks.restless import players as restless
from dist_vpg.tasks.restless import reflect


def _draws(task, episodes, seed=3, split=noise.VALID):
    return noise.draw(seed, split, 0, np.arange(episodes), task.trials, task.episode_draws, task.trial_draws)


def _reference(u_episode, u_trials, actions, drift_low=0.02, drift_high=0.2, share=0.5):
    """One episode written out plainly: (reward, regret) of each choice, and p on each trial."""
    p = float(u_episode[0])
    drift = drift_high if u_episode[1] < share else drift_low
    out, ps = [], []
    for (u_reward, u_step), a in zip(u_trials, actions):
        pays = p if a == 0 else 1.0 - p
        out.append((1.0 if u_reward < pays else 0.0, max(p, 1.0 - p) - pays))
        ps.append(p)
        u = min(max(float(u_step), 2.0**-25), 1.0 - 2.0**-25)
        p += drift * math.sqrt(2.0) * _erfinv(2.0 * u - 1.0)
        while not 0.0 <= p <= 1.0:  # reflect at the ends, as often as needed
            p = -p if p < 0.0 else 2.0 - p
    return out, ps


def _erfinv(y: float) -> float:
    x = 0.0
    for _ in range(60):  # Newton on erf(x) = y
        x -= (math.erf(x) - y) / (2.0 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


def test_restless_bandits_follow_the_rules_of_a_plain_loop():
    task = make_task(task_settings("restless", trials=40))
    assert (task.num_actions, task.obs_size, task.trials, task.max_reward) == (2, 0, 40, 1.0)
    draws = _draws(task, 200)
    actions = torch.randint(0, 2, (40, 200), generator=torch.Generator().manual_seed(1))
    state = task.reset(draws.episode)
    got, ps = [], []
    for t in range(40):
        ps.append(state.p)
        step = task.step(state, actions[t], draws.trial[t])
        state = step.state
        got.append(torch.stack([step.reward, step.regret], 1))
    got, ps = torch.stack(got, 1), torch.stack(ps, 1)  # [200, 40, 2], [200, 40]
    for b in range(200):
        want, want_p = _reference(
            draws.episode[b].tolist(), draws.trial[:, b].tolist(), actions[:, b].tolist()
        )
        np.testing.assert_allclose(ps[b].numpy(), want_p, atol=2e-5)
        np.testing.assert_allclose(got[b, :, 1].numpy(), [r for _, r in want], atol=5e-5)
        # a reward differs only where its uniform sits within rounding of p
        assert (got[b, :, 0].numpy() != [r for r, _ in want]).sum() <= 1
    volatile = task.reset(draws.episode).volatile
    assert 0.35 < volatile.float().mean() < 0.65
    steps = (ps[:, 1:] - ps[:, :-1]).abs().mean(1)
    assert steps[volatile].mean() > 5 * steps[~volatile].mean()


def test_reflect_folds_any_value_into_the_unit_interval():
    p = torch.linspace(-3.0, 4.0, 7001)
    folded = reflect(p)
    assert folded.min() >= 0 and folded.max() <= 1
    inside = (p >= 0) & (p <= 1)
    assert torch.equal(folded[inside], p[inside])
    assert torch.allclose(
        reflect(torch.tensor([-0.25, 1.25, 2.25, -1.75])), torch.tensor([0.25, 0.75, 0.25, 0.25])
    )


def test_the_filter_moves_p_as_the_task_does():
    """The step kernel against the task's own steps from one p, many times over."""
    task = RestlessBandit(drift_low=0.2, drift_high=0.2)
    n, start_cell = 200_000, 10  # p = 0.0525: many steps reflect off 0
    p = torch.full((n,), (start_cell + 0.5) / restless.GRID)
    u = torch.rand(n, 2, generator=torch.Generator().manual_seed(0))
    moved = task.step(
        task.reset(torch.zeros(n, 2))._replace(p=p), torch.zeros(n, dtype=torch.long), u
    ).state.p
    found = (
        torch.bincount((moved * restless.GRID).long().clamp(max=restless.GRID - 1), minlength=restless.GRID)
        / n
    )
    kernel = restless.step_kernel(0.2)
    assert torch.allclose(kernel.sum(1), torch.ones(restless.GRID, dtype=torch.float64))
    # 20 cells at a time: each holds a few % of the mass, known to about 0.1 %
    coarse = lambda x: x.view(-1, 20).sum(1).double()
    assert torch.allclose(coarse(found), coarse(kernel[start_cell]), atol=3e-3)


def test_the_greedy_filter_beats_every_other_player_on_the_same_episodes():
    task = RestlessBandit()
    draws = _draws(task, 1000)
    regret = {name: restless.player(task, name)(draws)[0].sum(0) for name in restless.PLAYERS}
    mean = {name: r.mean().item() for name, r in regret.items()}
    for name in ("thompson", "ucb", "rescorla_wagner", "random"):
        diff = regret[name] - regret["optimal"]
        assert diff.mean() > 2 * diff.std() / math.sqrt(len(diff)), (name, mean)
    assert mean["rw_oracle"] < mean["rescorla_wagner"]  # told the volatility, RW does better
    assert mean["random"] == pytest.approx(25.0, abs=1.0)


def test_told_the_volatility_the_filter_matches_the_best_rescorla_wagner():
    """With one volatility, the filter's greedy player is the Bayes-optimal one for a model that the
    best fixed learning rate nearly is: their regrets agree within the noise of a paired comparison."""
    for share in (0.0, 1.0):
        task = RestlessBandit(volatile_share=share)
        draws = _draws(task, 1000)
        optimal = restless.player(task, "optimal")(draws)[0].sum(0).double()
        best_rw = restless.rw_regrets(task, draws, restless.ALPHAS).mean(1).min()
        assert optimal.mean() < best_rw + optimal.std() / math.sqrt(1000), share  # one standard error


def test_a_finer_grid_changes_the_optimal_players_regret_by_little():
    task = RestlessBandit()
    draws = _draws(task, 200)
    regrets = {}
    for grid in (restless.GRID, 4 * restless.GRID):
        f = restless.Filter(task, grid)
        choose = lambda b, t, u, f=f: restless._choose(f.mean(b), 1.0 - f.mean(b), u)
        learn = lambda b, a, o, f=f: f.update(b, o)
        regrets[grid] = restless.play_episodes(task, draws, choose, learn, f.start)[0]
    per_episode = [r.sum(0).mean().item() for r in regrets.values()]
    assert abs(per_episode[0] - per_episode[1]) < 0.01


@pytest.mark.skipif(native.available() is not None, reason="the native build is unavailable here")
def test_the_native_filter_is_the_torch_filter():
    """players_c.filter_update against Filter.update in torch: the same posterior to 1e-12 after
    every trial of 100, on a batch that leaves a partial tile, and the filter players' very choices."""
    task = RestlessBandit()
    draws = _draws(task, 203)
    fast, slow = restless.Filter(task), restless.Filter(task, use_native=False)
    assert fast.bands is not None and slow.bands is None
    belief = fast.start(203)
    for t in range(task.trials):
        seen = (draws.trial[t, :, 0] < 0.5).double()
        got, want = fast.update(belief, seen), slow.update(belief, seen)
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-300), t
        belief = want
    for name in ("optimal", "thompson", "ucb"):
        played = restless.filter_player(task, name)(draws)
        reference = restless.filter_player(task, name, use_native=False)(draws)
        assert torch.equal(played[2], reference[2]), name


def _softmax_rw(task, draws, alpha, beta):
    """A Rescorla-Wagner learner choosing by softmax: actions [T, B], rewards [T, B]."""
    state = task.reset(draws.episode)
    q = torch.full((draws.action.shape[1],), 0.5, dtype=torch.float64)
    actions, rewards = [], []
    for t in range(task.trials):
        p_arm0 = torch.sigmoid(beta * (2 * q - 1))
        action = (draws.action[t] >= p_arm0).long()
        step = task.step(state, action, draws.trial[t])
        state = step.state
        q = q + alpha * (restless.outcome(action, step.reward).double() - q)
        actions.append(action)
        rewards.append(step.reward)
    return torch.stack(actions).numpy(), torch.stack(rewards).numpy()


@pytest.mark.parametrize("alpha,beta", [(0.03, 20.0), (0.3, 6.0)])
def test_the_fit_recovers_a_rescorla_wagner_learners_learning_rate(alpha, beta):
    task = RestlessBandit()
    actions, rewards = _softmax_rw(task, _draws(task, 500), alpha, beta)
    found_alpha, found_beta = restless.fit_learning_rate(actions, rewards)
    assert found_alpha == pytest.approx(alpha, rel=0.15)
    assert found_beta == pytest.approx(beta, rel=0.25)


@pytest.mark.skipif(native.available() is not None, reason="the native build is unavailable here")
def test_the_native_fit_is_the_numpy_fit():
    """players_c.rw_fits against the numpy reference on a softmax learner, a greedy one (whose
    likelihood is largest at beta's bound for its own alpha), random choices (beta near 0) and a
    shape that leaves padding in the C loops' last vector."""
    task = RestlessBandit()
    draws = _draws(task, 301)
    greedy = restless.rw_player(task, float(restless.ALPHAS[20]))(draws)
    cases = {
        "softmax": _softmax_rw(task, draws, 0.1, 8.0),
        "greedy": (greedy[2].numpy(), greedy[1].numpy()),
        "random": (draws.action.numpy() >= 0.5, draws.trial[..., 0].numpy() < 0.5),
    }
    cases["odd"] = (cases["softmax"][0][:13, :37], cases["softmax"][1][:13, :37])
    found = {}
    for name, (actions, rewards) in cases.items():
        betas, lls = found[name] = restless.rw_fits(actions, rewards)
        want_betas, want_lls = restless.rw_fits(actions, rewards, use_native=False)
        assert np.allclose(betas, want_betas, rtol=1e-6, atol=1e-9), name
        assert np.allclose(lls, want_lls, rtol=1e-12, atol=1e-9), name
        assert lls.argmax() == want_lls.argmax(), name
    assert found["greedy"][0][20] == restless.BETA_MAX > found["softmax"][0].max()
    assert found["random"][0].max() < 0.5


def test_learning_rates_are_fitted_per_block_of_each_volatility():
    task = RestlessBandit()
    draws = _draws(task, 1200)
    volatile = task.reset(draws.episode).volatile.numpy()
    assert np.array_equal(volatile, restless.volatile_episodes(task, 1200, 3, noise.VALID))
    _, rewards, actions = restless.player(task, "rw_oracle")(draws)
    fits = restless.learning_rates(actions.numpy(), rewards.numpy(), volatile, block=200)
    told = restless.tuned_alphas(task)
    for kind in ("low", "high"):
        assert len(fits[kind]["alpha"]) == fits[kind]["episodes"] // 200
        # greedy RW with a known alpha: every block's fit finds that alpha
        assert fits[kind]["alpha"] == pytest.approx([told[kind]] * len(fits[kind]["alpha"]), rel=0.07)
    assert told["low"] < told["all"] < told["high"]


def test_the_pretrained_agent_learns_faster_in_volatile_episodes():
    """The paper's point on the shipped agent, weights frozen: the Rescorla-Wagner learning rate
    fitted to its choices is about twice as high in volatile episodes as in stable ones."""
    from dist_vpg import evaluation, play

    agent, cfg = load_agent(play.DEFAULT_CHECKPOINT["restless"])
    task = make_task(cfg.task)
    result = evaluation.evaluate_agent(agent, task, cfg.task.trial_input, 1000, 7)
    volatile = restless.volatile_episodes(task, 1000, 7, noise.EVAL)
    fits = restless.learning_rates(result.actions, result.rewards, volatile)
    assert fits["high"]["mean"] > 1.5 * fits["low"]["mean"]
    assert result.regret.mean() < 7.5  # greedy Rescorla-Wagner with the best single alpha: about 7.1
