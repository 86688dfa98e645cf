"""The meta-RL agent: a recurrent cell (an LSTM by default, or a GRU or a tanh RNN) whose output
feeds a policy head and a value head."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dist_vpg import native

# nn.LSTM's oneDNN kernels run forward+backward at 380k-540k steps/s on one core for up to 64-96
# sequences, and at about 280k for 128 and more (the bound column of benchmarks/bench_rollout.py, and
# a sweep of batch sizes on this machine): replaying a large batch in slices is about 1.5x faster.
REPLAY_SLICE = 64


# agent.cell: the recurrent cell, its torch module and its one-step function. A cell's module is the
# agent's attribute of its name (agent.lstm, agent.gru, agent.rnn), so checkpoints name its weights.
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
_STEPS = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}


class LSTMState(NamedTuple):
    """The recurrent state: h, and the LSTM's cell c (zeros, unused, for the other cells)."""

    h: torch.Tensor  # [B, H]
    c: torch.Tensor  # [B, H]


class Agent(nn.Module):
    """Input each trial: task observation, one-hot previous action, previous reward, [trial index].

    `step` advances the cell by one trial (used while acting); `forward` runs whole [T, B] sequences
    through the cell's fused torch kernel (nn.LSTM, nn.GRU or nn.RNN: used to replay a recorded
    rollout), or, given a rollout an LSTM played natively, hands its recorded hidden states to
    autograd with no replay at all. All three compute the same function.
    """

    def __init__(
        self,
        input_size: int,
        num_actions: int,
        hidden: int = 48,
        privileged: int = 0,
        cell: str = "lstm",
        reward_scale: float = 1.0,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"agent.cell must be one of {', '.join(CELLS)}, not {cell!r}")
        self.cell = cell
        self.reward_scale = float(reward_scale)  # the previous reward's input is the reward times this
        setattr(self, cell, CELLS[cell](input_size, hidden))  # nn.RNN: tanh
        self.policy = nn.Linear(hidden, num_actions)
        self.value = nn.Linear(hidden, 1)
        # Equal logits: the first policy is uniform, the most entropic one.
        nn.init.zeros_(self.policy.weight)
        nn.init.zeros_(self.policy.bias)
        # A privileged critic: `privileged` features only the trainer knows add to the value (see
        # critic); nothing the policy computes depends on them. Zero at first: the plain critic.
        self.privileged = nn.Linear(privileged, 1, bias=False) if privileged else None
        if self.privileged is not None:
            nn.init.zeros_(self.privileged.weight)

    def critic(self, values: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """The values [T, B] of the privileged critic given its features [T, B, P]: the value head's
        own values plus a linear term of the features (values alone without a privileged critic)."""
        if self.privileged is None:
            return values
        return values + self.privileged(features).squeeze(-1)

    @property
    def core(self) -> nn.LSTM | nn.GRU | nn.RNN:
        """The recurrent module (agent.lstm, agent.gru or agent.rnn)."""
        return getattr(self, self.cell)

    @property
    def hidden(self) -> int:
        return self.core.hidden_size

    @property
    def input_size(self) -> int:
        return self.core.input_size

    def initial_state(self, batch: int) -> LSTMState:
        zeros = torch.zeros(batch, self.hidden)
        return LSTMState(zeros, zeros)

    def step(self, x: torch.Tensor, state: LSTMState) -> LSTMState:
        """One trial: x [B, I] -> the next state."""
        core = self.core
        weights = (core.weight_ih_l0, core.weight_hh_l0, core.bias_ih_l0, core.bias_hh_l0)
        if self.cell == "lstm":
            return LSTMState(*torch.lstm_cell(x, state, *weights))
        return LSTMState(_STEPS[self.cell](x, state.h, *weights), state.c)

    def state_features(self, state: LSTMState) -> torch.Tensor:
        """[B, F] what the state holds: h and the LSTM's cell, h alone for the other cells."""
        return torch.cat([state.h, state.c], 1) if self.cell == "lstm" else state.h

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [..., H] -> logits [..., A], values [...]."""
        return self.policy(h), self.value(h).squeeze(-1)

    def forward(
        self, x: torch.Tensor, played: native.Played | None = None, loss: dict | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole episodes from their first trial: x [T, B, I] -> logits [T, B, A], values [T, B].
        `played`: the native rollout that saw x, whose recorded states replace the replay. With
        `loss` (native.a2c_loss's arguments but the first two) as well: the A2C loss itself, heads
        and gradient computed natively (a call through the module, so wrappers such as DDP see it)."""
        if loss is not None:
            return native.a2c_loss(played, self, **loss)
        if played is not None:
            return self.heads(native.lstm_outputs(played, self.lstm))
        outputs = [self.core(part)[0] for part in x.split(REPLAY_SLICE, dim=1)]  # each [T, b, H]
        return self.heads(torch.cat(outputs, dim=1))
