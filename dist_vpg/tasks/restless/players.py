"""Restless bandits: the exact Bayesian filter, the players it makes, Rescorla-Wagner players, and
the Rescorla-Wagner fit that reads a learner's learning rate off its choices.

The filter holds the posterior over (volatility, p) on a grid of p: every trial it weighs the grid by
the outcome's likelihood, then moves it through the reflected Gaussian step of each volatility. As
every outcome tells as much about p whichever arm paid it (the task's docstring), the
distribution of the posteriors to come does not depend on the choices: greedy on the posterior
mean is the Bayes-optimal policy, exact up to the grid (GRID cells; 4x finer changes the regret by
less than 0.01, tests/test_restless.py). Thompson sampling and Bayes-UCB read the same posterior,
so they know the task's model as well as the optimal player does; what they lose is the price of
exploring where nothing is learned by it.

Rescorla-Wagner (RW) tracks p with one number, q += alpha * (outcome - q), where the outcome is
the reward seen from arm 0's side (a 1 from arm 1 is a 0 from arm 0). As a player it is greedy on
q, with the alpha that does best on validation episodes (`rescorla_wagner`), or, told each
episode's volatility, the best alpha of each (`rw_oracle`). As a model of a learner's choices,
P(arm 0) = sigmoid(beta * (2q - 1)), with (alpha, beta) fitted by maximum likelihood
(`fit_learning_rate`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

import dist_vpg.tasks.restless.players_c as players_c
from dist_vpg import noise
from dist_vpg.noise import Noise

if TYPE_CHECKING:  # the task imports this module: its class is named for the annotations alone
    from dist_vpg.tasks.restless import RestlessBandit

GRID = 200  # cells of p in the exact filter
PLAYERS = ("optimal", "thompson", "ucb", "rescorla_wagner", "rw_oracle", "random")
ALPHAS = np.geomspace(0.01, 1.0, 41)  # learning rates tried, by the RW players and the fit
# the fit's inverse temperature: its bound, and Newton's steps at most and their relative tolerance
BETA_MAX, NEWTON_STEPS, NEWTON_TOL = 1000.0, 30, 1e-4
BLOCK = 250  # episodes of one volatility per fit (`learning_rates`)
# The episodes that choose the RW players' learning rates: validation episodes of a seed of their own.
TUNE_SEED, TUNE_EPISODES = 99_991, 2000


def step_kernel(drift: float, grid: int = GRID) -> torch.Tensor:
    """[grid, grid] float64: row i is where p moves from cell i's centre in one reflected Gaussian
    step of s.d. `drift`, as the mass falling in each cell."""
    edges = torch.linspace(0.0, 1.0, grid + 1, dtype=torch.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    reach = math.ceil(drift * 8) + 1  # reflections that can carry mass: images of [0, 1] this far out
    mass = torch.zeros(grid, grid, dtype=torch.float64)
    normal = torch.distributions.Normal(centres.unsqueeze(1), drift)
    for k in range(-reach, reach + 1):  # [lo, hi] lands on [2k + lo, 2k + hi] and [2k - hi, 2k - lo]
        for lo, hi in ((2 * k + edges[:-1], 2 * k + edges[1:]), (2 * k - edges[1:], 2 * k - edges[:-1])):
            mass += normal.cdf(hi.unsqueeze(0)) - normal.cdf(lo.unsqueeze(0))
    return mass / mass.sum(1, keepdim=True)


class Filter:
    """The posterior over (volatility, p) of B episodes, float64 [B, 2, grid]."""

    def __init__(self, task: RestlessBandit, grid: int = GRID, use_native: bool = True):
        self.centres = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
        self.kernels = torch.stack([step_kernel(task.drift_low, grid), step_kernel(task.drift_high, grid)])
        in_c = use_native and grid % 8 == 0 and players_c.available()
        self.bands = players_c.filter_bands(self.kernels) if in_c else None  # None: the torch step
        self.prior = torch.tensor([1.0 - task.volatile_share, task.volatile_share], dtype=torch.float64)

    def start(self, batch: int) -> torch.Tensor:
        grid = len(self.centres)
        return (self.prior.view(1, 2, 1) / grid).expand(batch, 2, grid).clone()

    def p_marginal(self, belief: torch.Tensor) -> torch.Tensor:
        """[B, grid] the posterior of p alone."""
        return belief.sum(1)

    def mean(self, belief: torch.Tensor) -> torch.Tensor:
        return self.p_marginal(belief) @ self.centres

    def quantile(self, belief: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """[B] the centre of the first cell where p's posterior CDF reaches `level` [B]."""
        cdf = self.p_marginal(belief).cumsum(1)
        cell = (cdf < level.unsqueeze(1).to(cdf.dtype)).sum(1).clamp(max=len(self.centres) - 1)
        return self.centres[cell]

    def update(self, belief: torch.Tensor, outcome: torch.Tensor) -> torch.Tensor:
        """The posterior for the next trial, after seeing `outcome` [B] (the reward from arm 0's side):
        in one C call where the native build is available (players_c.filter_update, its sums
        in another order: the same posterior to about 1e-15), else in torch, the reference."""
        if self.bands is not None:
            return players_c.filter_update(belief, outcome, self.centres, self.kernels, self.bands)
        o = outcome.to(torch.float64).view(-1, 1, 1)
        belief = belief * (o * self.centres + (1 - o) * (1 - self.centres))
        belief = belief / belief.sum((1, 2), keepdim=True)
        return torch.einsum("bcg,cgh->bch", belief, self.kernels)


def outcome(action: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """The reward seen from arm 0's side: arm 1's 1 is arm 0's 0."""
    return torch.where(action == 0, reward, 1.0 - reward)


def _choose(score0: torch.Tensor, score1: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Arm 0 where it scores higher, arm 1 where lower, ties broken by the action noise u."""
    return torch.where(score0 == score1, (u >= 0.5).long(), (score1 > score0).long())


def play_episodes(task: RestlessBandit, draws: Noise, choose, learn, start):
    """Play B episodes with `choose(memory, t, u) -> actions` and `learn(memory, actions, outcomes)
    -> memory`, from `start(B)`: regrets, rewards, actions, each [T, B]."""
    state = task.reset(draws.episode)
    memory = start(draws.action.shape[1])
    regrets, rewards, actions = [], [], []
    for t in range(task.trials):
        action = choose(memory, t, draws.action[t])
        step = task.step(state, action, draws.trial[t])
        state = step.state
        memory = learn(memory, action, outcome(action, step.reward))
        regrets.append(step.regret)
        rewards.append(step.reward)
        actions.append(action)
    return torch.stack(regrets), torch.stack(rewards), torch.stack(actions)


def filter_player(task: RestlessBandit, name: str, use_native: bool = True):
    """optimal (greedy on the posterior mean), thompson (a sample of p), ucb (Bayes-UCB: each arm's
    posterior quantile 1 - 1/(t + 1), t the trial from 1)."""
    f = Filter(task, use_native=use_native)

    def choose(belief, t, u):
        if name == "optimal":
            mean = f.mean(belief)
            return _choose(mean, 1.0 - mean, u)
        if name == "thompson":
            sample = f.quantile(belief, u)
            return _choose(sample, 1.0 - sample, torch.full_like(u, 0.5))
        level = torch.full_like(u, 1.0 - 1.0 / (t + 2), dtype=torch.float64)
        return _choose(f.quantile(belief, level), 1.0 - f.quantile(belief, 1.0 - level), u)

    learn = lambda belief, action, seen: f.update(belief, seen)
    return lambda draws: play_episodes(task, draws, choose, learn, f.start)


def _rw_play(task: RestlessBandit, draws: Noise, alpha: torch.Tensor):
    """Greedy RW players, episode b learning at rate alpha [B]: regrets, rewards, actions [T, B]."""
    choose = lambda q, t, u: _choose(q, 1.0 - q, u)
    learn = lambda q, a, o: q + alpha * (o.double() - q)
    return play_episodes(task, draws, choose, learn, lambda b: torch.full((b,), 0.5, dtype=torch.float64))


def rw_player(task: RestlessBandit, alpha_low: float, alpha_high: float | None = None):
    """Greedy on q with learning rate alpha_low, or, given alpha_high too, the one of each episode's
    volatility (the player is told it)."""

    def play(draws: Noise):
        volatile = task.reset(draws.episode).volatile
        high = alpha_low if alpha_high is None else alpha_high
        return _rw_play(task, draws, volatile.double() * high + (~volatile).double() * alpha_low)

    return play


def random_player(task: RestlessBandit):
    choose = lambda memory, t, u: (u >= 0.5).long()
    return lambda draws: play_episodes(task, draws, choose, lambda m, a, o: m, lambda b: None)


def rw_regrets(task: RestlessBandit, draws: Noise, alphas: np.ndarray) -> torch.Tensor:
    """[len(alphas), B] each greedy RW player's regret over the episodes of `draws`, all at once: the
    episodes played len(alphas) times over side by side, once at each learning rate."""
    n = len(alphas)
    tiled = Noise(draws.episode.repeat(n, 1), draws.trial.repeat(1, n, 1), draws.action.repeat(1, n))
    alpha = torch.as_tensor(alphas, dtype=torch.float64).repeat_interleave(draws.action.shape[1])
    regrets = _rw_play(task, tiled, alpha)[0]  # [T, n * B]
    return regrets.double().sum(0).view(n, -1)


@functools.lru_cache(maxsize=8)
def tuned_alphas(task: RestlessBandit) -> dict[str, float]:
    """The RW players' learning rates: the best of ALPHAS on TUNE_EPISODES validation episodes, over
    all of them ('all') and over the stable ('low') and volatile ('high') ones."""
    ids = np.arange(TUNE_EPISODES)
    draws = noise.draw(TUNE_SEED, noise.VALID, 0, ids, task.trials, task.episode_draws, task.trial_draws)
    regrets = rw_regrets(task, draws, ALPHAS)
    volatile = task.reset(draws.episode).volatile
    best = lambda cols: float(ALPHAS[int(regrets[:, cols].mean(1).argmin())]) if cols.any() else 1.0
    return {"all": best(torch.ones_like(volatile)), "low": best(~volatile), "high": best(volatile)}


def player(task: RestlessBandit, name: str) -> Callable[[Noise], tuple]:
    """One of PLAYERS: draws -> (regrets, rewards, actions), each [T, B]."""
    if name in ("optimal", "thompson", "ucb"):
        return filter_player(task, name)
    if name == "rescorla_wagner":
        return rw_player(task, tuned_alphas(task)["all"])
    if name == "rw_oracle":
        alphas = tuned_alphas(task)
        return rw_player(task, alphas["low"], alphas["high"])
    if name == "random":
        return random_player(task)
    raise ValueError(f"unknown restless player {name!r}")


def rw_fits(
    actions: np.ndarray, rewards: np.ndarray, use_native: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """For each learning rate of ALPHAS, the RW model's best inverse temperature (in [0, BETA_MAX])
    and the log-likelihood it gives the choices actions [T, N] (0/1) given rewards [T, N], summed over
    the N episodes: (betas, log_likelihoods), each [len(ALPHAS)]. For a fixed alpha the likelihood
    is concave in beta (a logistic regression on one covariate, no intercept): Newton's method. In one
    C call where the native build is available (players_c.rw_fits: each rate's iterations
    stopped on their own, from its neighbour's beta, so betas agree to about NEWTON_TOL^2), else in
    numpy, the reference."""
    actions, rewards = np.asarray(actions, dtype=np.float64), np.asarray(rewards, dtype=np.float64)
    seen = np.where(actions == 0, rewards, 1.0 - rewards)  # [T, N]
    if use_native and players_c.available():
        return players_c.rw_fits(ALPHAS, seen, 1.0 - 2.0 * actions, BETA_MAX, NEWTON_STEPS, NEWTON_TOL)
    q = np.empty((len(ALPHAS), *actions.shape))  # q before each trial
    q_t = np.full((len(ALPHAS), actions.shape[1]), 0.5)
    for t in range(actions.shape[0]):
        q[:, t] = q_t
        q_t = q_t + ALPHAS.reshape(-1, 1) * (seen[t] - q_t)
    # log P(choice) = log sigmoid(beta * x), x = (2q - 1), signed +1 for arm 0 and -1 for arm 1
    x = ((2.0 * q - 1.0) * (1.0 - 2.0 * actions)).reshape(len(ALPHAS), -1)
    beta = np.ones((len(ALPHAS), 1))
    for _ in range(NEWTON_STEPS):
        p_wrong = _sigmoid(-beta * x)  # the model's chance of the other arm
        slope = (x * p_wrong).sum(1, keepdims=True)
        curve = (x * x * p_wrong * (1.0 - p_wrong)).sum(1, keepdims=True)
        beta, before = np.clip(beta + slope / np.maximum(curve, 1e-12), 0.0, BETA_MAX), beta
        if np.all(np.abs(beta - before) <= NEWTON_TOL * (1.0 + beta)):
            break
    log_likelihood = -np.logaddexp(0.0, -beta * x).sum(1)
    return beta[:, 0], log_likelihood


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_learning_rate(actions: np.ndarray, rewards: np.ndarray) -> tuple[float, float]:
    """The maximum-likelihood (alpha, beta) of the RW model for these episodes: the best alpha of
    ALPHAS, moved to the top of the parabola through its neighbours' log-likelihoods (in log alpha)
    where they bracket a maximum; beta is the best one of that grid alpha."""
    betas, ll = rw_fits(actions, rewards)
    best = int(ll.argmax())
    alpha = math.log(ALPHAS[best])
    if 0 < best < len(ALPHAS) - 1:
        bend = ll[best - 1] - 2 * ll[best] + ll[best + 1]
        if bend < 0:
            shift = 0.5 * (ll[best - 1] - ll[best + 1]) / bend  # in grid steps, within (-1/2, 1/2]
            alpha += float(np.clip(shift, -0.5, 0.5)) * math.log(ALPHAS[1] / ALPHAS[0])
    return math.exp(alpha), float(betas[best])


def learning_rates(
    actions: np.ndarray, rewards: np.ndarray, volatile: np.ndarray, block: int = BLOCK
) -> dict:
    """Fitted learning rates of stable ('low') and volatile ('high') episodes, one per block of
    `block` episodes of that volatility (in episode order; a last, partial block is dropped unless it
    is the only one): {"low": {"alpha": [..], "beta": [..], "mean", "sem"}, "high": ...}."""
    found = {}
    for kind, mask in (("low", ~volatile), ("high", volatile)):
        ids = np.flatnonzero(mask)
        blocks = [ids[i : i + block] for i in range(0, len(ids) - block + 1, block)] or [ids]
        fits = [fit_learning_rate(actions[:, b], rewards[:, b]) for b in blocks if len(b)]
        alphas = np.array([a for a, _ in fits])
        found[kind] = {
            "episodes": int(len(ids)),
            "alpha": alphas.tolist(),
            "beta": [b for _, b in fits],
            "mean": float(alphas.mean()) if len(alphas) else float("nan"),
            "sem": float(alphas.std(ddof=1) / np.sqrt(len(alphas))) if len(alphas) > 1 else float("nan"),
        }
    return found


def volatile_episodes(task: RestlessBandit, episodes: int, seed: int, split: int) -> np.ndarray:
    """[episodes] bool: which of the first `episodes` episodes of (seed, split) are volatile."""
    draws = noise.draw(seed, split, 0, np.arange(episodes), 1, task.episode_draws, 1)
    return task.reset(draws.episode).volatile.numpy()
