"""Play an episode yourself in the terminal, then compare with the agent on the very same episode.

    python -m dist_vpg.play --task bandit   (or two_step, informative_arms, restless, harlow;
                                             --checkpoint PATH: another agent)

Type a choice's number (1 or 2; 1-11 for informative arms) and Enter, q to stop. At the end the
task's hidden parameters are revealed, with your expected regret beside the agent's: the agent meets
the same arm probabilities, the same reward draws and the same transitions.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from dist_vpg import checkpoint, cli, config, noise
from dist_vpg.evaluate import load_agent
from dist_vpg.rollout import act
from dist_vpg.tasks import Harlow, InformativeArms, RestlessBandit, TwoStep, make_task
from dist_vpg.tasks.informative import TARGET_PAYS

EOF = -1  # ask's answer when standard input has ended
NO_INPUT = (
    "standard input ended before the first choice: play reads one choice a line, so run it in a "
    "terminal, or pipe the choices in (printf '1\\n2\\n' | python -m dist_vpg.play)"
)
PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_CHECKPOINT = {
    "bandit": PRETRAINED / "bandit_independent.pt",
    "two_step": PRETRAINED / "two_step.pt",
    "informative_arms": PRETRAINED / "informative_arms.pt",
    "restless": PRETRAINED / "restless.pt",
    "harlow": PRETRAINED / "harlow.pt",
}


def object_name(features: torch.Tensor) -> str:
    """A Harlow object as a word a person can hold in mind: consonant-vowel pairs from its first
    features (two objects of the pool share a name with a chance of about 1 in 10,000)."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    letters = [
        (consonants if i % 2 == 0 else vowels)[int(f * (14 if i % 2 == 0 else 5))]
        for i, f in enumerate(features[:4].tolist())
    ]
    return "".join(letters).upper()


def ask(t: int, trials: int, stdin: TextIO, stdout: TextIO, choices: int = 2) -> int | None:
    """The player's choice (0 .. choices - 1), None to stop, or EOF when the input has ended."""
    keys = [str(k) for k in range(1, choices + 1)]
    wanted = "1 or 2" if choices == 2 else f"one of 1-{choices}"
    while True:
        stdout.write(f"trial {t + 1}/{trials}: choose {wanted} (q to stop): ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return EOF
        if line.strip().lower() == "q":
            return None
        if line.strip() in keys:
            return int(line.strip()) - 1
        stdout.write(f"  type {wanted}, then Enter\n")


def play(path: Path, seed: int, stdin: TextIO, stdout: TextIO) -> dict:
    """One episode for the person, then the agent on the same one; returns both regrets."""
    agent, cfg = load_agent(path)
    task = make_task(cfg.task)
    draws = noise.draw(seed, noise.EVAL, 1, np.array([0]), task.trials, task.episode_draws, task.trial_draws)
    state = task.reset(draws.episode)
    regrets, rewards, states = [], [], []
    trials = getattr(task, "choices", task.trials)  # Harlow with fixation: 2 agent steps a trial
    stdout.write(f"{cfg.task.name}: {trials} trials, {task.num_actions} choices. Find what pays.\n")
    obs, steps = task.first_obs(state), 0  # steps: the agent steps played
    for t in range(task.trials):
        if isinstance(task, Harlow) and not state.choosing:  # a fixation step: nothing to choose
            state = task.step(state, torch.tensor([0]), draws.trial[t]).state
            obs, steps = task.observe(state), t + 1
            continue
        if isinstance(task, Harlow):
            left, right = obs[0].view(2, task.features)
            stdout.write(f"  left: {object_name(left)}   right: {object_name(right)}   (1: left, 2: right)\n")
        choice = ask(len(regrets), trials, stdin, stdout, task.num_actions)
        if choice == EOF and not regrets:
            stdout.write("\n")
            return {"trials": 0, "input_ended": True}
        if choice is None or choice == EOF:
            break
        states.append(state)
        step = task.step(state, torch.tensor([choice]), draws.trial[t])
        state, obs, steps = step.state, step.obs, t + 1
        regrets.append(step.regret.item())
        rewards.append(step.reward.item())
        where = ""
        if isinstance(task, TwoStep):
            reached = int(step.obs[0].argmax())
            where = f"you reached state {'AB'[reached]} ({'common' if bool(step.state.common) else 'rare'}), "
        stdout.write(f"  {where}reward {step.reward.item():g}\n")
    played = len(regrets)
    if played == 0:
        stdout.write("no trials played\n")
        return {"trials": 0}
    with torch.inference_mode():
        agent_run = act(agent, task, draws, cfg.task.trial_input, with_values=False)
    agent_regret = agent_run.regrets[:steps, 0].sum().item()
    if isinstance(task, TwoStep):
        stdout.write(
            "Choice 1 leads mostly to A, choice 2 mostly to B; the paying state swapped now and then.\n"
        )
    elif isinstance(task, InformativeArms):
        target = int(task.reset(draws.episode).target[0])
        stdout.write(
            f"Revealed: arm {target + 1} paid {TARGET_PAYS:g}, the other ordinary arms 1, and arm "
            f"{task.num_actions} told where the {TARGET_PAYS:g} was: it paid "
            f"{task.scale * (target + 1) / task.ordinary:g}, {task.scale:g}/{task.ordinary} of the "
            "target's number.\n"
        )
    elif isinstance(task, Harlow):
        rewarded, other = object_name(state.rewarded[0]), object_name(state.other[0])
        stdout.write(f"Revealed: {rewarded} paid every time, wherever it stood; {other} never did.\n")
    elif isinstance(task, RestlessBandit):
        kind = "a volatile" if bool(state.volatile[0]) else "a stable"
        path = " ".join(f"{float(s.p[0]):.2f}" for s in states)
        stdout.write(
            f"Revealed: {kind} episode (p stepped by s.d. {float(state.drift[0]):g} a trial). Arm 1 paid "
            f"with p, arm 2 with 1 - p; p on your trials: {path}.\n"
        )
    else:
        probs = ", ".join(
            f"arm {i + 1} paid with p = {p:.2f}" for i, p in enumerate(task.reset(draws.episode).probs[0])
        )
        stdout.write(f"Revealed: {probs}.\n")
    result = {
        "trials": played,
        "your_reward": sum(rewards),
        "your_regret": sum(regrets),
        "agent_reward": agent_run.rewards[:steps, 0].sum().item(),
        "agent_regret": agent_regret,
    }
    stdout.write(
        f"Over {played} trials: you earned {result['your_reward']:g}, expected regret "
        f"{result['your_regret']:.2f}; the agent earned {result['agent_reward']:g}, expected regret "
        f"{result['agent_regret']:.2f}.\n"
    )
    return result


def main(argv: list[str] | None = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    parser = cli.Parser("dist_vpg.play", __doc__)
    parser.add_argument("--task", choices=sorted(DEFAULT_CHECKPOINT), default="bandit")
    parser.add_argument(
        "--checkpoint", type=Path, help="the agent to compare with (default: the pretrained one)"
    )
    parser.add_argument("--seed", type=cli.seed, help="which episode (default: a new one each time)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else time.time_ns() % 2**31
    if stdin is None or stdin.closed:
        return cli.refuse(parser.name, NO_INPUT)
    try:
        result = play(args.checkpoint or DEFAULT_CHECKPOINT[args.task], seed, stdin, stdout)
    except (checkpoint.CheckpointError, config.ConfigError) as e:
        return cli.refuse(parser.name, str(e))
    if result.get("input_ended"):
        return cli.refuse(parser.name, NO_INPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
