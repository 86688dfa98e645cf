"""The native rollout: acting for all B episodes and T trials in one C call, and the update's
gradient without a replay forward.

`act` plays a batch like dist_vpg.rollout.act, keeping what the backward needs (the gates after
their nonlinearities and the cells). `a2c_loss` then computes the heads, the A2C loss and the whole
gradient in two more C calls: the loss's gradient back to the hidden states, then the LSTM's
recurrence with its weight gradients summed trial by trial while the gate gradients are in cache.
`lstm_outputs` hands the recorded hidden states to autograd instead, for heads and a loss written in
torch, through a Function whose backward is that same C recurrence. The torch rollouts are the
reference (tests/test_native.py) and the fallback where this cannot be built
(dist_vpg/native/build.py).
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from dist_vpg.losses import LossTerms
from dist_vpg.native.abi import floats
from dist_vpg.native.build import NativeUnavailable, load
from dist_vpg.native.interface import DECLARED

if TYPE_CHECKING:
    from dist_vpg.noise import Noise

__all__ = [
    "NativeError", "NativeUnavailable", "Played", "RMSprop", "Update", "Updated", "a2c_loss", "act",
    "available", "lstm_outputs",
]  # fmt: skip

VW = DECLARED.constants["VW"]  # floats per vector: weight rows are padded to a multiple of it
_Weights, _LossSpec, _Task, _Update = (
    DECLARED.structs[name] for name in ("Weights", "LossSpec", "Task", "Update")
)
# the staged weights' parts (dv_stage_parts), in interface.h's order
_STAGE_PARTS = sorted(
    (
        name.removeprefix("STAGE_")
        for name in DECLARED.constants
        if name.startswith("STAGE_") and name != "STAGE_PARTS"
    ),
    key=lambda name: DECLARED.constants["STAGE_" + name],
)


class NativeError(RuntimeError):
    """A kernel refused its arguments (a status of interface.h); the message says which and why."""


def _checked(status: int, kernel: str) -> None:
    if status != DECLARED.constants["DV_OK"]:
        reason = _library().dv_error(status).decode()
        raise NativeError(f"the native {kernel} refused its arguments: {reason}")


class Played(NamedTuple):
    inputs: torch.Tensor  # [T, B, I]
    actions: torch.Tensor  # [T, B] long
    rewards: torch.Tensor  # [T, B]
    regrets: torch.Tensor  # [T, B]
    h: torch.Tensor  # [T, B, H] hidden state after each trial
    gates: torch.Tensor | None  # [T, B, 4H] after their nonlinearities (kept for the backward)
    c: torch.Tensor | None  # [T, B, H] cell after each trial (kept for the backward)
    heads: torch.Tensor | None = None  # [T, B, A + 1] the logits, then the value (kept for the loss)
    # the weights it was played with as the backward and the loss read them (dv_stage): W_hh
    # [4H, Hp] and the heads [A + 1, Hp], zero columns past H
    w_hh: torch.Tensor | None = None
    w_heads: torch.Tensor | None = None


def available(task=None, cell: str = "lstm") -> str | None:
    """None when the native path can run here (for `task`, if given, and an agent of `cell`), else
    why not (one sentence)."""
    if cell != "lstm":
        return f"the {cell} cell has no native kernel (the LSTM alone has one)"
    try:
        _library()
        if task is not None:
            _native_step(task)
    except NativeUnavailable as e:
        return str(e)
    return None


def _library() -> ctypes.CDLL:
    return load()  # typed from interface.h and its layout checked (dist_vpg.native.build)


def _p(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _padded(n: int) -> int:
    return -(-n // VW) * VW


def _pad_columns(w: torch.Tensor, width: int) -> torch.Tensor:
    """w [..., n] -> [..., width] with zero columns after n, contiguous."""
    return torch.nn.functional.pad(w, (0, width - w.shape[-1])).contiguous()


def _task(task, noise: Noise, keep: list) -> ctypes.Structure:
    """The task as dv_act plays it: its native step's functions and its state (the unit's
    native_state of the torch task's reset), checked by the step's dv_task_check. What the C call
    holds by address goes into `keep`, which the caller holds until the call returns."""
    step = _native_step(task)
    state = task.reset(noise.episode)
    found = task.native_state(state, keep)
    if not isinstance(found, step.State):
        raise NativeError(
            f"{type(task).__name__}.native_state returned {type(found).__name__}, not the "
            f"{step.State.__name__} that {step.path.name} declares"
        )
    keep.append(found)
    check = step.library().dv_task_check
    status = check(ctypes.byref(found), noise.action.shape[1], task.num_actions, task.trial_draws)
    _checked(status, f"{type(task).__name__} task's step ({step.path.name})")
    first_obs = floats(task.first_obs(state), keep) if task.obs_size else None  # Harlow's objects
    return _Task(ctypes.addressof(found), step.function(), task.trial_draws, task.obs_size, first_obs)


def _native_step(task):
    """The task's abi.NativeStep; raises NativeUnavailable where it has none or it cannot be built."""
    step = getattr(task, "native_step", None) if task.offers("native_state") else None
    if step is None:
        raise NativeUnavailable(_no_task(task))
    step.library()
    return step


def _no_task(task) -> str:
    name = type(task).__name__
    return f"the {name} task has no native step (its unit does not define both native_step and native_state)"


def act(agent: nn.Module, task, noise: Noise, trial_input: bool, for_backward: bool = True) -> Played:
    """Play T trials of B episodes in lockstep, as dist_vpg.rollout.act does, in one C call."""
    lib = _library()
    trials, batch = noise.action.shape
    lstm, policy = agent.lstm, agent.policy
    hidden, actions_n = lstm.hidden_size, policy.out_features
    inputs_n, gates_padded, actions_padded = lstm.input_size, _padded(4 * hidden), _padded(actions_n + 1)
    # the weights transposed and padded as dv_act reads them, the value head riding along as the
    # policy's last column: one C call (dv_stage) from the parameters as they are
    params = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]
    params = [
        p.detach().float().contiguous() for p in params + [*policy.parameters(), *agent.value.parameters()]
    ]
    sizes = (inputs_n, hidden, actions_n, gates_padded, actions_padded)
    parts = (ctypes.c_int64 * DECLARED.constants["STAGE_PARTS"])()
    lib.dv_stage_parts(*sizes, parts)
    staged = torch.empty(sum(parts))
    lib.dv_stage(*sizes, *(_p(t) for t in params), _p(staged))
    hidden_padded, part = _padded(hidden), dict(zip(_STAGE_PARTS, staged.split(list(parts))))
    w_hh_padded = part["W_HH"].view(4 * hidden, hidden_padded) if for_backward else None
    w_heads = part["W_HEADS"].view(actions_n + 1, hidden_padded) if for_backward else None
    keep: list = []
    stepped = _task(task, noise, keep)
    w = _Weights(*sizes, *(_p(part[name]) for name in ("W_T", "BIAS", "W_POL_T", "B_POL")))
    # the trial's uniforms, or what the task's native step reads instead (restless: the normal
    # quantile of its drift's uniform, computed by torch as its torch step does)
    trial_noise = task.native_noise(noise.trial)
    trial_noise = trial_noise.float().contiguous()
    action_noise = noise.action.float().contiguous()
    x = torch.empty(trials, batch, inputs_n)
    actions = torch.empty(trials, batch, dtype=torch.int64)
    rewards, regrets = torch.empty(trials, batch), torch.empty(trials, batch)
    h = torch.empty(trials, batch, hidden)
    gates = torch.empty(trials, batch, 4 * hidden) if for_backward else None
    c = torch.empty(trials, batch, hidden) if for_backward else None
    heads = torch.empty(trials, batch, actions_n + 1) if for_backward else None
    scratch = torch.empty(lib.dv_act_scratch(batch, *sizes))
    status = lib.dv_act(
        trials, batch, int(trial_input), agent.reward_scale, ctypes.byref(w), ctypes.byref(stepped),
        _p(trial_noise), _p(action_noise), _p(x), _p(actions), _p(rewards), _p(regrets),
        _p(h), _p(gates), _p(c), _p(heads), _p(scratch),
    )  # fmt: skip
    _checked(status, "acting loop (dv_act)")
    return Played(x, actions, rewards, regrets, h, gates, c, heads, w_hh_padded, w_heads)


class _RecordedLSTM(torch.autograd.Function):
    """The LSTM over a recorded rollout: forward returns the hidden states the acting loop already
    computed; backward runs the recurrence natively, then the weight gradients in one product."""

    @staticmethod
    def forward(ctx, played: Played, w_ih, w_hh, b_ih, b_hh):
        ctx.save_for_backward(w_hh, played.inputs, played.gates, played.c, played.h)
        return played.h.detach()  # an alias: played.h itself stays out of the graph

    @staticmethod
    def backward(ctx, dh):
        w_hh, x, gates, c, h = ctx.saved_tensors  # w_hh is the parameter: padded in _lstm_gradients
        return None, *_lstm_gradients(Played(x, None, None, None, h, gates, c), w_hh, dh)


def lstm_outputs(played: Played, lstm: nn.LSTM) -> torch.Tensor:
    """[T, B, H] hidden states of a rollout played by `act`, differentiable in the LSTM's weights."""
    if played.gates is None:
        raise ValueError("this rollout was played without for_backward")
    return _RecordedLSTM.apply(played, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)


def _lstm_gradients(played: Played, w_hh: torch.Tensor, dh: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The LSTM's weight gradients (w_ih, w_hh, b_ih, b_hh) of a rollout played by `act`, from dL/dh
    [T, B, H] (or [T, B, Hp] with columns past H ignored)."""
    x, h = played.inputs, played.h
    trials, batch, hidden = h.shape
    inputs_n, lib = x.shape[2], _library()
    hidden_padded, gates_padded = _padded(hidden), _padded(4 * hidden)
    # Every tensor handed to C by address is held in a name until the call returns.
    w_hh = played.w_hh if played.w_hh is not None else _pad_columns(w_hh.detach(), hidden_padded)
    dh = dh.contiguous()
    dh_stride = dh.shape[2]
    d_w = torch.empty(inputs_n + hidden, gates_padded)  # [W_ih | W_hh]'s gradient, transposed
    d_bias = torch.empty(gates_padded)
    scratch = torch.empty(lib.dv_backward_scratch(batch, hidden, hidden_padded, gates_padded))
    status = lib.dv_lstm_backward(
        trials, batch, inputs_n, hidden, hidden_padded, gates_padded, _p(w_hh), _p(x), _p(h),
        _p(played.gates), _p(played.c), _p(dh), dh_stride, _p(d_w), _p(d_bias), _p(scratch),
    )  # fmt: skip
    _checked(status, "LSTM backward (dv_lstm_backward)")
    d_w = d_w[:, : 4 * hidden].t()  # [4H, I + H]
    d_w_ih, d_w_hh = (part.contiguous() for part in d_w.split([inputs_n, hidden], 1))
    d_bias = d_bias[: 4 * hidden]
    return d_w_ih, d_w_hh, d_bias, d_bias.clone()  # two tensors: .grad may adopt them


class _FusedA2C(torch.autograd.Function):
    """The A2C loss of a recorded rollout, heads included, with its whole gradient computed in C
    in the forward; backward hands it to autograd (scaled by what reaches the loss), so DDP's
    hooks and gradient accumulation see it as any other backward."""

    @staticmethod
    def forward(
        ctx, played: Played, signal, spec: _LossSpec, w_ih, w_hh, b_ih, b_hh, w_pol, b_pol, w_val, b_val
    ):
        trials, batch, hidden = played.h.shape
        actions_n, lib = w_pol.shape[0], _library()
        hidden_padded, outputs_padded = _padded(hidden), _padded(actions_n + 1)
        w_heads = played.w_heads  # [A + 1, Hp], as `act` played
        if w_heads is None:
            w_heads = _pad_columns(torch.cat([w_pol, w_val]).detach(), hidden_padded)
        signal, actions = signal.float().contiguous(), played.actions.contiguous()
        dh = torch.empty(trials, batch, hidden_padded)
        d_heads = torch.empty(hidden, outputs_padded)  # (dW_pol | dw_val)^T
        d_b_heads = torch.empty(outputs_padded)
        terms = torch.empty(4, dtype=torch.float64)
        scratch = torch.empty(lib.dv_loss_scratch(trials, batch, actions_n, outputs_padded, hidden_padded))
        status = lib.dv_a2c_loss(
            trials, batch, hidden, hidden_padded, actions_n, outputs_padded, ctypes.byref(spec),
            _p(w_heads), _p(played.h), _p(played.heads), _p(actions), _p(signal), _p(dh), _p(d_heads),
            _p(d_b_heads), _p(terms), _p(scratch),
        )  # fmt: skip
        _checked(status, "A2C loss (dv_a2c_loss)")
        d_heads = d_heads[:, : actions_n + 1].t()
        d_w_pol, d_w_val = d_heads[:actions_n].contiguous(), d_heads[actions_n:].contiguous()
        d_b_pol, d_b_val = d_b_heads[:actions_n].clone(), d_b_heads[actions_n : actions_n + 1].clone()
        ctx.grads = (*_lstm_gradients(played, w_hh, dh), d_w_pol, d_b_pol, d_w_val, d_b_val)
        total, policy, value, entropy = terms.float().unbind()
        ctx.mark_non_differentiable(policy, value, entropy)
        return total, policy, value, entropy

    @staticmethod
    def backward(ctx, d_total, *_):
        if d_total.numel() == 1 and float(d_total) == 1.0:  # the loss itself: no scaling to do
            return (None, None, None, *ctx.grads)
        return (None, None, None, *(g * d_total for g in ctx.grads))


def a2c_loss(
    played: Played,
    agent: nn.Module,
    signal: torch.Tensor,
    gamma: float,
    lam: float,
    beta_v: float,
    beta_e: float,
    value_scale: bool = False,
    episodes_per_task: int = 1,
) -> LossTerms:
    """dist_vpg.losses.a2c_loss of a rollout `agent` played by `act`, heads and all, in two C calls:
    the same terms (total differentiable in every parameter of `agent`), from `signal` [T, B] (what
    the loss learns from: dist_vpg.losses.training_signal). The heads' outputs are the ones `act`
    recorded, so the agent's weights must not have changed since it played."""
    if played.gates is None:
        raise ValueError("this rollout was played without for_backward")
    batch = played.h.shape[1]
    if episodes_per_task > 1 and batch % episodes_per_task:
        raise ValueError(f"{batch} episodes do not split into tasks of {episodes_per_task}")
    spec = _LossSpec(gamma, lam, beta_v, beta_e, int(value_scale), episodes_per_task)
    lstm = agent.lstm
    params = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    params += (agent.policy.weight, agent.policy.bias, agent.value.weight, agent.value.bias)
    return LossTerms(*_FusedA2C.apply(played, signal, spec, *params))


class Updated(NamedTuple):
    """What `Update` played, and its loss."""

    inputs: torch.Tensor  # [T, B, I]
    actions: torch.Tensor  # [T, B] long
    rewards: torch.Tensor  # [T, B]
    regrets: torch.Tensor  # [T, B]
    loss: LossTerms  # the terms, as floats: the gradient is in .grad


_SIGNALS = {name: DECLARED.constants[f"SIGNAL_{name.upper()}"] for name in ("reward", "regret")}


class Update:
    """A rollout's whole native pass in one C call (dv_update) over buffers kept from call to call:
    acting, the heads, the A2C loss, the LSTM's backward, and `scale` times the gradient added to
    each parameter's .grad in place. The same numbers, bit for bit, as `act` and `a2c_loss` with
    autograd accumulating `scale` times their loss's gradient (tests/test_native.py), without
    autograd: what training runs where no strategy reduces inside backward (DDP's hooks need
    `a2c_loss` through the wrapper)."""

    SIGNALS = tuple(_SIGNALS)  # the training signals it computes (dist_vpg.losses.training_signal)

    def __init__(self, agent: nn.Module):
        lstm = agent.lstm
        self.agent = agent
        self.params = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]
        self.params += [agent.policy.weight, agent.policy.bias, agent.value.weight, agent.value.bias]
        self._kept = torch.empty(0)

    def __call__(
        self,
        task,
        noise: Noise,
        trial_input: bool,
        signal: str,
        scale: float,
        gamma: float,
        lam: float,
        beta_v: float,
        beta_e: float,
        value_scale: bool = False,
        episodes_per_task: int = 1,
    ) -> Updated:
        """Play `noise`'s batch of `task`, learning from `signal` (reward or regret) with the loss
        settings of a2c_loss: what was played and the loss's terms, not differentiable (the
        gradient is in .grad already)."""
        if signal not in _SIGNALS:
            raise ValueError(f"the native update learns from {' or '.join(_SIGNALS)}, not {signal!r}")
        lib, agent = _library(), self.agent
        trials, batch = noise.action.shape
        if episodes_per_task > 1 and batch % episodes_per_task:
            raise ValueError(f"{batch} episodes do not split into tasks of {episodes_per_task}")
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if any(t.dtype != torch.float32 or not t.is_contiguous() for t in (p, p.grad)):
                raise NativeError("the native update needs contiguous float32 parameters and gradients")
        inputs_n, hidden, actions_n = agent.lstm.input_size, agent.lstm.hidden_size, agent.policy.out_features
        kept = lib.dv_update_kept(trials, batch, inputs_n, hidden, actions_n)
        if self._kept.numel() < kept:
            self._kept = torch.empty(kept)
        keep: list = []
        stepped = _task(task, noise, keep)
        trial_noise = task.native_noise(noise.trial).float().contiguous()
        action_noise = noise.action.float().contiguous()
        x = torch.empty(trials, batch, inputs_n)
        actions = torch.empty(trials, batch, dtype=torch.int64)
        rewards, regrets = torch.empty(trials, batch), torch.empty(trials, batch)
        terms = torch.empty(4, dtype=torch.float64)
        update = _Update(
            trials, inputs_n, hidden, actions_n, batch, int(trial_input), _SIGNALS[signal],
            agent.reward_scale, scale, *(p.data_ptr() for p in self.params),
            *(p.grad.data_ptr() for p in self.params), self._kept.data_ptr(),
        )  # fmt: skip
        spec = _LossSpec(gamma, lam, beta_v, beta_e, int(value_scale), episodes_per_task)
        status = lib.dv_update(
            ctypes.byref(update), ctypes.byref(spec), ctypes.byref(stepped), _p(trial_noise),
            _p(action_noise), _p(x), _p(actions), _p(rewards), _p(regrets), _p(terms),
        )  # fmt: skip
        _checked(status, "update (dv_update)")
        return Updated(x, actions, rewards, regrets, LossTerms(*terms.float().unbind()))


class RMSprop(torch.optim.RMSprop):
    """torch.optim.RMSprop (the same state and state_dict) whose `clip_and_step` does
    torch.nn.utils.clip_grad_norm_ and step() in one C pass: what training on the native path uses
    (train.make_optimizer; tests/test_native.py holds it equal to torch's two calls)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._kept_arrays: tuple = (None, None)  # (what they were made from, dv_clip_rmsprop's arrays)

    def clip_and_step(self, params: list[torch.Tensor], max_norm: float) -> float | None:
        """The gradients' norm before clipping; steps only when it is finite. None, having done
        nothing, where this group is not one dv_clip_rmsprop computes (momentum, centering, weight
        decay, tensors that are not contiguous float32 on the CPU): the caller then uses torch."""
        group = self._plain(params)
        if group is None:
            return None
        state = self.state
        for p in params:
            if not state[p]:  # as RMSprop's first step makes it
                state[p]["step"] = torch.zeros((), dtype=torch.float32)
                state[p]["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        tensors = [(p, p.grad, state[p]["square_avg"], state[p]["step"]) for p in params]
        arrays = self._arrays(tensors)
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        return _library().dv_clip_rmsprop(len(params), *arrays, max_norm, lr, alpha, eps)

    def _arrays(self, tensors: list[tuple[torch.Tensor, ...]]) -> tuple:
        """dv_clip_rmsprop's arrays of addresses (weights, gradients, square averages, step counts)
        and sizes, made again only when an address has changed since the last step."""
        key = tuple(x for group in tensors for x in (group[0].numel(), *(t.data_ptr() for t in group)))
        if self._kept_arrays[0] != key:
            pointers = ctypes.c_void_p * len(tensors)
            made = [pointers(*(group[j].data_ptr() for group in tensors)) for j in range(4)]
            sizes = (ctypes.c_int64 * len(tensors))(*(group[0].numel() for group in tensors))
            self._kept_arrays = (key, (*made, sizes))
        return self._kept_arrays[1]

    def _plain(self, params: list[torch.Tensor]) -> dict | None:
        if len(self.param_groups) != 1:
            return None
        group = self.param_groups[0]
        plain = not (group["momentum"] or group["centered"] or group["weight_decay"] or group["maximize"])
        plain = plain and not (group.get("capturable") or group.get("differentiable"))
        same = len(group["params"]) == len(params) and all(a is b for a, b in zip(group["params"], params))
        if not (plain and same):
            return None
        for p in params:
            grad = p.grad
            if grad is None:
                return None
            for t in (p, grad):
                if t.dtype != torch.float32 or not t.is_cpu or not t.is_contiguous():
                    return None
        return group
