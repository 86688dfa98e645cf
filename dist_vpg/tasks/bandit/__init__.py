"""Bernoulli bandits: independent arms, or two dependent arms paying p and 1 - p (Wang et al. 2016).

Players: random, UCB1, Thompson sampling (`players`) and, with 2 arms, the Bayes-optimal policy and
the best policy of the agent's own training objective, both by exact dynamic programming (`bayes`).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import NamedTuple

import torch

from dist_vpg.native import abi
from dist_vpg.noise import Noise
from dist_vpg.results import Player
from dist_vpg.settings import TaskSettings, choice, require, setting
from dist_vpg.tasks.bandit import bayes, players
from dist_vpg.tasks.base import Step, TaskUnit

# Dependent-arm bandits draw p for arm 0 from these sets (arm 1 pays 1 - p); None is U(0, 1).
DEPENDENT_SETS = {"dependent": None, "easy": (0.1, 0.9), "medium": (0.25, 0.75), "hard": (0.4, 0.6)}
DISTRIBUTIONS = ("independent", *DEPENDENT_SETS)


@dataclass(frozen=True)
class BanditSettings(TaskSettings):
    name: str = "bandit"
    trials: int = 100
    arms: int = setting(2, "arms to choose from (2 for the dependent distributions)")
    # independent: each arm's p ~ U(0, 1); dependent: p and 1 - p, p ~ U(0, 1); easy, medium, hard:
    # p from {0.1, 0.9}, {0.25, 0.75}, {0.4, 0.6}
    distribution: str = setting("independent", "independent | dependent (p, 1 - p) | easy | medium | hard")

    def check(self) -> None:
        super().check()
        require(self.arms >= 2, "task.arms", "must be >= 2")
        choice(self.distribution, "task.distribution", DISTRIBUTIONS)
        require(
            self.distribution == "independent" or self.arms == 2,
            "task.distribution",
            f"{self.distribution!r} is defined for 2 arms only (task.arms={self.arms})",
        )


class BanditState(NamedTuple):
    probs: torch.Tensor  # [B, arms] each arm's Bernoulli reward probability
    best: torch.Tensor  # [B] the best arm's probability


class Bandit(TaskUnit):
    """N Bernoulli arms whose probabilities are drawn anew for every episode."""

    Settings = BanditSettings
    pretrained = "bandit_independent.pt"
    gym_ids = {
        "dist_vpg/Bandit-v0": {"distribution": "independent"},
        "dist_vpg/DependentBandit-v0": {"distribution": "dependent"},
    }
    regret_chart = True  # on bandits regret is the yardstick
    raster_sort = ("gap", "p(arm 1) - p(arm 2) (top: arm 2 better)")
    action_word = "arm"
    # The default run's recipe where the configuration sets none (docs/learning.md: a growing batch
    # and a lower final entropy bonus): the entropy bonus ends at 0.003, and the batch grows from one
    # round of train.batch_episodes to three over the run.
    training = {"train.beta_e_final": 0.003, "sync.accumulate_final": 3}

    obs_size = 0
    trial_draws = 1
    max_reward = 1.0

    def __init__(self, arms: int = 2, distribution: str = "independent", trials: int = 100):
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown bandit distribution {distribution!r}")
        if distribution != "independent" and arms != 2:
            raise ValueError(f"{distribution!r} bandits have 2 arms, not {arms}")
        self.num_actions = arms
        self.distribution = distribution
        self.trials = trials
        self.episode_draws = arms
        self._no_obs = torch.zeros(0)

    def reset(self, u: torch.Tensor) -> BanditState:
        if self.distribution == "independent":
            probs = u.clone()
        else:
            levels = DEPENDENT_SETS[self.distribution]
            p = u[:, 0] if levels is None else torch.where(u[:, 0] < 0.5, levels[0], levels[1])
            probs = torch.stack([p, 1.0 - p], dim=1)
        return BanditState(probs, probs.max(dim=1).values)

    def step(self, state: BanditState, action: torch.Tensor, u: torch.Tensor) -> Step:
        chosen = state.probs.gather(1, action.unsqueeze(1)).squeeze(1)  # [B]
        reward = (u[:, 0] < chosen).float()
        regret = state.best - chosen
        return Step(state, self._no_obs.expand(len(action), 0), reward, regret)

    @property
    def privileged_size(self) -> int:
        return self.num_actions

    def privileged(self, state: BanditState) -> torch.Tensor:
        """The arms' payout probabilities."""
        return state.probs

    def offers(self, feature: str) -> bool:
        if feature == "expert":
            return self.num_actions == 2  # the exact DP covers 2 arms
        return super().offers(feature)

    def expert(self, state: BanditState, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """The Bayes-optimal player's chance of each arm before each trial (bayes.py's tables),
        indexed by the successes and pulls of each arm the episode's history holds."""
        if not self.offers("expert"):
            raise NotImplementedError(f"no exact expert for {self.num_actions} arms")
        optimal = bayes.BayesOptimal(self.distribution, self.trials, DEPENDENT_SETS.get(self.distribution))
        pulled = torch.nn.functional.one_hot(actions, 2).to(torch.int64)  # [T, B, 2]
        paid = pulled * rewards.to(torch.int64).unsqueeze(-1)
        # counts before each trial: the cumulative sums shifted by one trial
        pulls = torch.cat([torch.zeros_like(pulled[:1]), pulled.cumsum(0)[:-1]])
        wins = torch.cat([torch.zeros_like(paid[:1]), paid.cumsum(0)[:-1]])
        arm1 = torch.empty(actions.shape, dtype=torch.float32)
        for t in range(self.trials):
            s, f = wins[t].numpy(), (pulls[t] - wins[t]).numpy()
            table = optimal.solution.p_arm1[t]
            p = table[s[:, 0] + f[:, 1]] if optimal.dependent else table[s[:, 0], f[:, 0], s[:, 1]]
            arm1[t] = torch.from_numpy(p.astype("float32"))
        return torch.stack([1.0 - arm1, arm1], dim=-1)

    def mirror(self, draws: Noise) -> Noise:
        """Independent arms: the arms' draws in reverse order. Dependent arms: p -> 1 - p (for a
        level set, the other level; a draw of exactly 0.5 stays on its own, one in 2^24)."""
        flipped = draws.episode.flip(1) if self.distribution == "independent" else 1.0 - draws.episode
        return Noise(flipped, draws.trial, 1.0 - draws.action)

    native_step = abi.NativeStep(__file__, "step.c")

    def native_state(self, state: BanditState, keep: list) -> ctypes.Structure:
        probs, best = abi.floats(state.probs, keep), abi.floats(state.best, keep)
        return self.native_step.State(state.probs.shape[1], probs, best)

    # --- evaluation ---

    def policies(self, objective: tuple[float, float] | None = None) -> dict[str, players.Policy]:
        """The classical policies, and the DP policies when they are within reach (2 arms): the
        Bayes-optimal one, and, given the agent's training objective (gamma, beta_e) when it is not
        already the Bayes-optimal one, the best policy for that objective (`objective_optimal`): the
        ceiling of what that training can reach."""
        found = dict(players.BASELINES)
        if self.num_actions == 2:
            levels = DEPENDENT_SETS.get(self.distribution)
            found["bayes_optimal"] = bayes.BayesOptimal(self.distribution, self.trials, levels)
            if objective is not None and objective != (1.0, 0.0):
                gamma, beta = objective
                found["objective_optimal"] = bayes.BayesOptimal(
                    self.distribution, self.trials, levels, gamma, beta
                )
        return found

    best_player = "bayes_optimal"
    best_is_optimal = True

    def players(self, objective: tuple[float, float] | None = None) -> dict[str, Player]:
        return {name: players.player(policy, self) for name, policy in self.policies(objective).items()}

    def episode_record(self, state: BanditState) -> dict[str, torch.Tensor]:
        return {"gap": state.probs[:, 0] - state.probs[:, 1]}

    def beliefs(self, state, inputs, actions, rewards) -> dict[str, torch.Tensor]:
        """Each arm's posterior mean and pull count before each choice. Independent arms: Beta(1 + s,
        1 + f) each; dependent ones: the posterior of p from all the evidence (arm 1 pays 1 - p)."""
        pulled = torch.nn.functional.one_hot(actions, self.num_actions).double()  # [T, B, A]
        paid = pulled * rewards.double().unsqueeze(-1)
        before = lambda x: torch.cat([torch.zeros_like(x[:1]), x.cumsum(0)[:-1]])  # sums over earlier trials
        pulls, successes = before(pulled), before(paid)
        if self.distribution == "independent":
            mean = (successes + 1) / (pulls + 2)
        else:  # evidence for p: arm 0's successes and arm 1's failures, out of every trial so far
            a = successes[..., 0] + (pulls[..., 1] - successes[..., 1])
            b = pulls.sum(-1) - a
            p0 = torch.from_numpy(bayes.predictive(a.numpy(), b.numpy(), DEPENDENT_SETS[self.distribution]))
            mean = torch.stack([p0, 1 - p0], -1)
        return {"posterior_mean": mean, "pulls": pulls}

    def exact_regrets(self, objective: tuple[float, float] | None = None) -> dict[str, float]:
        """The DP policies' expected regret at the last trial, computed exactly (no sampling): the
        figures their Monte Carlo entries estimate."""
        return {
            name: policy.solution.regret(self.trials)
            for name, policy in self.policies(objective).items()
            if isinstance(policy, bayes.BayesOptimal)
        }

    def report(self, results, seed, split, objective) -> dict:
        return {"exact_regret_at_end": self.exact_regrets(objective)}

    # --- play ---

    def rules(self) -> str:
        if self.distribution == "independent":
            return "Each arm pays 1 with a chance of its own, hidden and drawn anew each episode."
        return "Two arms pay 1 with hidden chances p and 1 - p: what one shows, it shows of the other too."

    def reveal(self, states, last) -> str:
        probs = ", ".join(f"arm {i + 1} paid with p = {p:.2f}" for i, p in enumerate(states[0].probs[0]))
        return f"Revealed: {probs}.\n"
