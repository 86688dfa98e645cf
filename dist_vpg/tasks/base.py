"""What every task is, and what dist_vpg asks of one.

`Task` is the step: a batch of B episodes stepped in lockstep, with no randomness of its own.
`TaskUnit` is the rest of a task, with defaults: its settings (`Settings`, a dataclass of its
task.* keys), the players it is evaluated against, the figures of its report, how `dist_vpg.play`
shows it, its Gymnasium ids and, where it has one, its native step (`native_step`, `native_state`).
Evaluation, play, the Gymnasium adapter and the native rollout ask the task; none of them knows a
task by name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

import torch

from dist_vpg.noise import Noise
from dist_vpg.plots import RasterView
from dist_vpg.results import EvalResult, Player
from dist_vpg.settings import TaskSettings

if TYPE_CHECKING:
    import ctypes

    from dist_vpg.native import abi


class Step(NamedTuple):
    state: NamedTuple  # the task's own per-episode state after this trial
    obs: torch.Tensor  # [B, obs_size] what the agent sees on the next trial
    reward: torch.Tensor  # [B] float 0/1
    regret: torch.Tensor  # [B] expected reward of the best action minus that of the chosen one


class Task(Protocol):
    obs_size: int
    num_actions: int
    trials: int  # agent steps an episode
    episode_draws: int  # uniforms per episode consumed by reset
    trial_draws: int  # uniforms per trial consumed by step
    max_reward: float  # the most one trial pays (rewards lie in [0, max_reward])

    def reset(self, u: torch.Tensor) -> NamedTuple: ...  # u [B, episode_draws]

    def first_obs(self, state: NamedTuple) -> torch.Tensor: ...  # [B, obs_size] seen on trial 1

    def step(self, state: NamedTuple, action: torch.Tensor, u: torch.Tensor) -> Step: ...


class TaskUnit:
    """A task's settings, players, report, figures, play view and Gymnasium ids, with the defaults of
    a task that has none of its own: a subclass defines the step (`Task`) and overrides what it has.
    Its optional features (OPTIONAL) it offers by defining their methods; `offers` is the one way
    anything asks whether it has one."""

    # A privileged critic's features, the exact expert (train.signal=imitation), the arm-swapped
    # mirror (train.mirror) and the native step (the native rollout).
    OPTIONAL: ClassVar[tuple[str, ...]] = ("privileged", "expert", "mirror", "native_state")

    def offers(self, feature: str) -> bool:
        """Whether this task has the optional `feature`: its unit defines the feature's method. A unit
        whose variants differ overrides this (bandits: an exact expert for two arms alone)."""
        if feature not in self.OPTIONAL:
            raise ValueError(f"{feature!r} is not an optional task feature ({', '.join(self.OPTIONAL)})")
        return getattr(type(self), feature) is not getattr(TaskUnit, feature)

    Settings: ClassVar[type[TaskSettings]] = TaskSettings
    pretrained: ClassVar[str | None] = None  # play's default agent: a file in pretrained/
    gym_ids: ClassVar[dict[str, dict[str, Any]]] = {}  # Gymnasium id -> its task.* settings
    regret_chart: ClassVar[bool] = False  # log the training regret as a TensorBoard chart
    # the per-episode record (episode_record) that sorts raster.png's rows, and how it reads
    raster_sort: ClassVar[tuple[str, str] | None] = None
    action_word: ClassVar[str] = "action"  # what raster.png's legend calls a choice ("arm": arm 1, ...)
    # The stages task.name=X alone trains through (dist_vpg.curriculum; curriculum=none skips them):
    # each a mapping of set (task.* and train.* keys), updates or share, and until_regret; the last
    # one is the task as configured, for the rest of the run. () trains the task from the start.
    curriculum: ClassVar[tuple[dict[str, Any], ...]] = ()
    # train.*, agent.* and sync.* keys a run of the task takes where its configuration leaves them
    # unset (the run's length, where the task needs a longer one than the default's; how the agent
    # sees the reward; a batch that grows); --show-config prints the result.
    training: ClassVar[dict[str, Any]] = {}

    obs_size: int
    trials: int

    @classmethod
    def from_settings(cls, settings: TaskSettings):
        """The task of these settings: by default, each key but name and trial_input is a keyword
        of the constructor."""
        keys = {f.name for f in dataclasses.fields(settings)} - {"name", "trial_input"}
        return cls(**{key: getattr(settings, key) for key in keys})

    def first_obs(self, state: NamedTuple) -> torch.Tensor:
        """What the first trial shows: nothing (zeros). The first field of the task's state must
        have the batch as its first dimension."""
        return torch.zeros(len(state[0]), self.obs_size)

    # --- training ---

    privileged_size: ClassVar[int] = 0  # features of `privileged`; 0: no privileged critic

    def privileged(self, state: NamedTuple) -> torch.Tensor:
        """[B, privileged_size] what a privileged critic (agent.privileged_critic) may see of the
        episodes' reset state: the task's hidden parameters, which the agent never sees."""
        raise NotImplementedError(f"the {type(self).__name__} task offers no privileged features")

    def expert(self, state: NamedTuple, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """[T, B, A] the Bayes-optimal player's action probabilities at each trial, given the
        history the episodes (reset state `state`) played before it, actions and rewards [T, B]:
        what train.signal=imitation teaches."""
        raise NotImplementedError(f"the {type(self).__name__} task has no exact expert")

    def mirror(self, draws: Noise) -> Noise:
        """train.mirror: the noise of episodes that play the mirror images of `draws`' episodes, the
        arms' order reversed: the same task with its arms swapped (episode draws), the same reward
        draws (trial draws), and the action noise 1 - u, under which inverse-CDF sampling from
        reversed probabilities picks the reversed arm."""
        raise NotImplementedError(f"the {type(self).__name__} task has no arm-swapped mirror")

    # The task's C step (a file beside the unit, dist_vpg/native/task.h's contract), with
    # native_state: abi.NativeStep(__file__, "step.c").
    native_step: ClassVar[abi.NativeStep | None] = None

    def native_state(self, state: NamedTuple, keep: list) -> ctypes.Structure:
        """The episodes' reset state as the native step reads it: its `native_step.State` filled with
        the task's constants and tensors, each tensor put in `keep` while the C call holds its address
        (abi.floats, abi.longs)."""
        raise NotImplementedError(f"the {type(self).__name__} task has no native step")

    def native_noise(self, trial: torch.Tensor) -> torch.Tensor:
        """What the native step reads of the trials' uniforms [T, B, trial_draws]: by default, they."""
        return trial

    # --- evaluation (dist_vpg.evaluate) ---

    # The player of `players` the agent is measured against (the periodic evaluation's gap, the
    # sweep's): the task's best. `best_is_optimal`: it is the exact optimum, not merely the best
    # player the task has.
    best_player: ClassVar[str | None] = None
    best_is_optimal: ClassVar[bool] = False

    def players(self, objective: tuple[float, float] | None = None) -> dict[str, Player]:
        """The players the agent is evaluated beside, on its own episodes; `objective` is the
        agent's (gamma, beta_e) at the end of its training."""
        return {}

    def best(self) -> Player | None:
        """The `best_player` alone, where this task's variant has it (None: nothing to hold the
        agent against)."""
        return self.players().get(self.best_player) if self.best_player else None

    def episode_record(self, state: NamedTuple) -> dict[str, torch.Tensor]:
        """Per-episode figures [b] of the episodes' reset state, kept beside every player's result."""
        return {}

    def agent_record(self, inputs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """What Played.extra holds for the agent, from what it saw [T, b, I] and chose [T, b]."""
        return {}

    def beliefs(
        self, state: NamedTuple, inputs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The Bayes posterior before each choice of the agent's episodes, {kind: [T, b, k]}, from
        their reset state, what the agent saw [T, b, I], chose and was paid [T, b]; what
        dist_vpg.belief decodes from the agent's state. {}: the task has none to offer."""
        return {}

    def report(
        self, results: dict[str, EvalResult], seed: int, split: int, objective: tuple[float, float]
    ) -> dict:
        """The task's own figures for metrics.json (merged into it key by key). results: the agent's
        ("agent") and each player's, on the episodes of (seed, split)."""
        return {}

    def figures(self, metrics: dict, results: dict[str, EvalResult], out: Path) -> None:
        """The task's own PNG figures in `out`, from metrics.json's figures and the results."""

    def raster_view(self, agent: EvalResult) -> RasterView:
        """What raster.png colours in each trial of the agent's episodes (its choice steps alone):
        by default the action chosen, named with `action_word`, and a dot where it paid."""
        return RasterView.of_actions(agent.actions, agent.rewards, self.action_word)

    # --- play (dist_vpg.play) ---

    @property
    def choice_steps(self) -> list[int]:
        """The agent steps of an episode that are choices (all of them, unless the task says)."""
        return list(range(self.trials))

    def rules(self) -> str:
        """What the person is told before the first choice: what the choices are and what is
        hidden, as much as the agent could learn of the task in training."""
        return "Find what pays."

    def is_choice(self, state: NamedTuple) -> bool:
        """Whether the next step of episode 0 is a choice a person makes."""
        return True

    def show(self, state: NamedTuple, obs: torch.Tensor) -> str:
        """A line that shows the person what episode 0 shows before its next choice, or ""."""
        return ""

    def describe(self, step: Step) -> str:
        """What the person learns after a choice in episode 0."""
        return f"reward {step.reward.item():g}"

    def reveal(self, states: list[NamedTuple], last: NamedTuple) -> str:
        """The hidden parameters of episode 0, told once it has been played: `states` are the states
        at each choice played, `last` the state after the last one."""
        return ""
