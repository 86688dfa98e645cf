"""Play an episode yourself in the terminal, then compare with the agent on the very same episode.

    python -m dist_vpg.play --task bandit   (or any task with a pretrained agent: two_step,
                                             informative_arms, restless, harlow;
                                             --checkpoint PATH: another agent, of any task)

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

from dist_vpg import checkpoint, cli, config, noise, tasks
from dist_vpg.checkpoint import load_agent
from dist_vpg.rollout import act

EOF = -1  # ask's answer when standard input has ended
NO_INPUT = (
    "standard input ended before the first choice: play reads one choice a line, so run it in a "
    "terminal, or pipe the choices in (printf '1\\n2\\n' | python -m dist_vpg.play)"
)
PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_CHECKPOINT = {
    name: PRETRAINED / unit.pretrained for name, unit in tasks.TASKS.items() if unit.pretrained
}


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


def play(path: Path, seed: int, stdin: TextIO, stdout: TextIO, task_name: str | None = None) -> dict:
    """One episode for the person, then the agent on the same one; returns both regrets. Given
    `task_name`, the checkpoint's agent must have been trained on that task."""
    agent, cfg = load_agent(path)
    if task_name is not None and cfg.task.name != task_name:
        raise config.ConfigError(
            f"--task {task_name}: {path} is an agent of the {cfg.task.name} task; leave --task out "
            f"to play {cfg.task.name}, or give an agent of {task_name}"
        )
    task = tasks.make_task(cfg.task)
    draws = noise.draw(seed, noise.EVAL, 1, np.array([0]), task.trials, task.episode_draws, task.trial_draws)
    state = task.reset(draws.episode)
    regrets, rewards, states = [], [], []
    trials = len(task.choice_steps)  # Harlow with fixation: 2 agent steps a trial
    stdout.write(f"{cfg.task.name}: {trials} trials, {task.num_actions} choices. {task.rules()}\n")
    obs, steps = task.first_obs(state), 0  # steps: the agent steps played
    for t in range(task.trials):
        if not task.is_choice(state):  # a step with nothing to choose (Harlow's fixation)
            step = task.step(state, torch.tensor([0]), draws.trial[t])
            state, obs, steps = step.state, step.obs, t + 1
            continue
        stdout.write(task.show(state, obs))
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
        stdout.write(f"  {task.describe(step)}\n")
    played = len(regrets)
    if played == 0:
        stdout.write("no trials played\n")
        return {"trials": 0}
    with torch.inference_mode():
        agent_run = act(agent, task, draws, cfg.task.trial_input, with_values=False)
    agent_regret = agent_run.regrets[:steps, 0].sum().item()
    stdout.write(task.reveal(states, state))
    result = {
        "trials": played,
        "your_reward": sum(rewards),
        "your_regret": sum(regrets),
        "agent_reward": agent_run.rewards[:steps, 0].sum().item(),
        "agent_regret": agent_regret,
    }
    trials_word = "trial" if played == 1 else "trials"
    stdout.write(
        f"Over {played} {trials_word}: you earned {result['your_reward']:g}, expected regret "
        f"{result['your_regret']:.2f}; the agent earned {result['agent_reward']:g}, expected regret "
        f"{result['agent_regret']:.2f}.\n"
    )
    return result


def main(argv: list[str] | None = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    parser = cli.Parser("dist_vpg.play", __doc__)
    parser.add_argument(
        "--task",
        help=f"the task to play (default: bandit, or the checkpoint's); with a pretrained agent: "
        f"{', '.join(sorted(DEFAULT_CHECKPOINT))}",
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="the agent to compare with (default: the task's pretrained one)"
    )
    parser.add_argument("--seed", type=cli.seed, help="which episode (default: a new one each time)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else time.time_ns() % 2**31
    if stdin is None or stdin.closed:
        return cli.refuse(parser.name, NO_INPUT)
    if args.task is not None:
        try:
            tasks.lookup(args.task)
        except config.ConfigError as e:
            return cli.refuse(parser.name, f"--task {args.task}: {str(e).partition(': ')[2]}")
    if args.checkpoint is None and (args.task or tasks.DEFAULT) not in DEFAULT_CHECKPOINT:
        return cli.refuse(
            parser.name,
            f"--task {args.task}: no pretrained agent plays it (those that do: "
            f"{', '.join(sorted(DEFAULT_CHECKPOINT))}); give --checkpoint, an agent trained on it",
        )
    path = args.checkpoint or DEFAULT_CHECKPOINT[args.task or tasks.DEFAULT]
    try:
        result = play(path, seed, stdin, stdout, args.task)
    except (checkpoint.CheckpointError, config.ConfigError) as e:
        return cli.refuse(parser.name, str(e))
    if result.get("input_ended"):
        return cli.refuse(parser.name, NO_INPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
