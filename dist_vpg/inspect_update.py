"""Look inside one A2C update: each loss component back-propagated on its own.

    python -m dist_vpg.inspect_update --config configs/bandit_independent.yaml [key=value ...]
    python -m dist_vpg.inspect_update --checkpoint runs/X/checkpoint-00008000.pt [key=value ...]

Plays one batch (train.batch_episodes episodes) with the agent from the checkpoint (or freshly
initialized), back-propagates the policy loss, beta_v * value loss and -beta_e * entropy separately,
prints per-parameter gradient statistics for each and for the total loss, and checks that the three
components add up to the gradient of the total. Exit status 1 if they do not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from dist_vpg import checkpoint, cli, config, noise
from dist_vpg.agent import Agent
from dist_vpg.losses import a2c_loss, training_signal
from dist_vpg.rollout import agent_for, features, rollout, usable_mode
from dist_vpg.tasks import make_task

STATS = ("mean", "median", "std", "min", "max", "sum")


def gradient_stats(grad: torch.Tensor) -> dict[str, float]:
    g = grad.detach().double().reshape(-1)
    return {
        "mean": g.mean().item(),
        "median": g.median().item(),
        "std": g.std().item() if g.numel() > 1 else float("nan"),
        "min": g.min().item(),
        "max": g.max().item(),
        "sum": g.sum().item(),
    }


def component_gradients(agent: Agent, cfg: config.Config, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """{component: {parameter name: gradient}} for policy, value, entropy and total, on one batch."""
    task = make_task(cfg.task)
    tr = cfg.train
    ids = np.arange(tr.batch_episodes)
    draws = noise.draw(
        seed, noise.EVAL, 0, ids, task.trials, task.episode_draws, task.trial_draws, tr.episodes_per_task
    )
    batch = rollout(agent, task, draws, usable_mode(tr.rollout, task, agent.cell)[0], cfg.task.trial_input)
    batch = batch._replace(values=agent.critic(batch.values, features(agent, task, draws)))
    loss = a2c_loss(
        batch.logits,
        batch.values,
        batch.actions,
        training_signal(batch.rewards, batch.regrets, tr.signal),
        tr.gamma,
        tr.gae_lambda,
        tr.beta_v,
        tr.beta_e,
        value_scale=tr.value_scale,
        episodes_per_task=tr.episodes_per_task,
    )
    parts = {
        "policy": loss.policy,
        "value": tr.beta_v * loss.value,
        "entropy": -tr.beta_e * loss.entropy,
        "total": loss.total,
    }
    names = [n for n, _ in agent.named_parameters()]
    grads = {}
    for part, value in parts.items():
        g = torch.autograd.grad(value, list(agent.parameters()), retain_graph=True, allow_unused=True)
        grads[part] = {
            n: (x if x is not None else torch.zeros_like(p)) for n, x, p in zip(names, g, agent.parameters())
        }
    return grads


def format_table(grads: dict[str, dict[str, torch.Tensor]]) -> str:
    lines = []
    header = f"{'parameter':<22}" + "".join(f"{s:>12}" for s in STATS)
    for part, by_name in grads.items():
        lines += [f"# {part}", header, "-" * len(header)]
        for name, g in by_name.items():
            st = gradient_stats(g)  # a one-element parameter has no spread: "-"
            cells = [f"{st[s]:>+12.4g}" if st[s] == st[s] else f"{'-':>12}" for s in STATS]
            lines.append(f"{name:<22}" + "".join(cells))
    return "\n".join(lines)


def zero_gradients_explained(agent: Agent, grads: dict[str, dict[str, torch.Tensor]]) -> list[str]:
    """Why a component's gradient is zero where the agent's start makes it so: a fresh agent's
    policy head is zero (a uniform policy)."""
    if agent.policy.weight.abs().max().item() > 0:
        return []
    lstm = [n for n, g in grads["policy"].items() if n.startswith("lstm.") and not g.abs().max().item()]
    flat = all(not g.abs().max().item() for g in grads["entropy"].values())
    notes = []
    if lstm:
        notes.append(
            "policy: zero into the LSTM because policy.weight is zero (a fresh agent's head starts "
            "at a uniform policy, and the policy loss reaches the LSTM only through it)"
        )
    if flat:
        notes.append("entropy: zero everywhere because a uniform policy's entropy is at its maximum")
    return notes


def components_add_up(grads: dict[str, dict[str, torch.Tensor]], rtol: float = 1e-4) -> list[str]:
    """Names of parameters whose component gradients do not sum to the total's."""
    bad = []
    for name, total in grads["total"].items():
        summed = grads["policy"][name] + grads["value"][name] + grads["entropy"][name]
        scale = total.abs().max().item() + 1e-12
        if (summed - total).abs().max().item() > rtol * scale + 1e-7:
            bad.append(name)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser("dist_vpg.inspect_update", __doc__)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--seed", type=cli.seed, default=0)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    try:
        if args.checkpoint:  # its own config, with any overrides on top
            if args.config:
                parser.error("--config and --checkpoint exclude each other (the checkpoint holds its config)")
            agent, cfg = checkpoint.load_agent(args.checkpoint, args.overrides, weights="trained")
            agent.train()
        else:
            cfg = config.load(args.config, args.overrides)
            torch.manual_seed(cfg.seed)
            agent = agent_for(cfg, make_task(cfg.task))
    except (config.ConfigError, checkpoint.CheckpointError) as e:
        return cli.refuse(parser.name, str(e))
    if cfg.train.signal == "imitation":
        return cli.refuse(
            parser.name,
            "train.signal=imitation: this splits the A2C loss's gradient, which imitation has none of",
        )
    grads = component_gradients(agent, cfg, args.seed)
    print(format_table(grads))
    for note in zero_gradients_explained(agent, grads):
        print(f"note: {note}")
    bad = components_add_up(grads)
    if bad:
        print(f"components do NOT add up to the total gradient for: {', '.join(bad)}")
        return 1
    print("policy + value + entropy gradients add up to the total gradient for every parameter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
