"""An exponential average of the trained weights, kept beside them and evaluated instead of them.

After the n-th applied update, average = (1 - w) * average + w * weights with
w = max(1 - decay, 2 / (n + 1)): the mean of the trained weights so far, update k weighing k, until
n = 2 / (1 - decay) - 1, then their exponential average, which at decay 0.999 spans about the last
thousand updates, smoothing the noise each RMSprop step adds to the policy. The warm-up keeps the
random initial weights out of it (an average that started from them scored near chance for the
first thousand updates of a run), and its weighting toward recent updates lets early evaluations
score about what the weights play (the default run's at update 500: 3.46 beside a training line of
3.38; a plain mean of all 500 updates scored 4.63). Every rank keeps its own; under a
strategy whose ranks' weights part between agreements (local_sgd) the checkpoint holds rank 0's.
"""

from __future__ import annotations

import copy
import sys

import torch
from torch import nn


class WeightAverage:
    def __init__(self, agent: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.count = 0  # updates averaged
        self.model = copy.deepcopy(agent).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, agent: nn.Module) -> None:
        self.count += 1
        averaged, trained = list(self.model.parameters()), [p.detach() for p in agent.parameters()]
        torch._foreach_lerp_(averaged, trained, max(1.0 - self.decay, 2.0 / (self.count + 1)))

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict, count: int | None) -> None:
        """`count`: the updates averaged, as checkpoints keep it ("average_updates"); None for a
        checkpoint from before the warm-up, whose average went on as a plain exponential one."""
        self.model.load_state_dict(state)
        self.count = count if count is not None else sys.maxsize
