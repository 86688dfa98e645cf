"""An exponential average of the trained weights, kept beside them and evaluated instead of them.

After each applied update, average = decay * average + (1 - decay) * weights: with decay 0.999 the
average spans about the last thousand updates, smoothing the noise each RMSprop step adds to the
policy. It starts from the initial weights, whose share after n updates is decay ** n (3e-4 after
8000 updates at 0.999). Every rank keeps its own; under a strategy whose ranks' weights part between
agreements (local_sgd) the checkpoint holds rank 0's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, agent: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(agent).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, agent: nn.Module) -> None:
        averaged, trained = list(self.model.parameters()), [p.detach() for p in agent.parameters()]
        torch._foreach_lerp_(averaged, trained, 1.0 - self.decay)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
