"""What a run and an evaluation need in memory, estimated before anything is allocated, so that a
configuration beyond the machine is refused in one line instead of failing in an allocation.

The figures: one update's rollout and backward per rank (`rollout_bytes`), the periodic
evaluation's gathered results (`check_memory`) and dist_vpg.evaluate's results
(`evaluation_problem`), measured against both rollouts (docs/fault-tolerance.md).
"""

from __future__ import annotations

from dist_vpg import batching, tasks
from dist_vpg.config import Config
from dist_vpg.settings import require

# Bytes one agent step of one episode holds during an update, per hidden unit, per action and fixed:
# the LSTM keeps its 4 gates, c, h and tanh(c) for the backward pass and as much again for their
# gradients, and the native backward its [x, h_prev] rows (15 floats a unit, measured against both
# the native and the twopass rollout: docs/fault-tolerance.md); logits, probabilities and their
# gradients take 4 floats an action; inputs, noise, rewards and values the rest. The weights are
# held 5 times over: parameters, gradients, the flat gradient buffer and two optimizer moments.
STEP_BYTES_PER_UNIT, STEP_BYTES_PER_ACTION, STEP_BYTES_FIXED = 4 * 15, 4 * 4, 4 * 24
BASE_BYTES = 400 * 2**20  # a rank's own footprint before any rollout: torch, gloo, the agent


def rollout_bytes(cfg: Config, world_size: int, task=None) -> int:
    """Estimated peak memory of one rank's update (rollout, replay and backward), in bytes; `task`
    is cfg's task where the caller has made it already."""
    task = task or tasks.make_task(cfg.task)
    hidden, actions = cfg.agent.hidden, task.num_actions
    # observation (counted as at least 2), previous action, reward, trial index
    inputs = max(task.obs_size, 2) + actions + 2
    weights = 4 * hidden * (hidden + inputs + 2) + (actions + 1) * (hidden + 1)
    share = batching.plan(cfg, world_size).share
    per_step = STEP_BYTES_PER_UNIT * hidden + STEP_BYTES_PER_ACTION * actions + STEP_BYTES_FIXED
    return BASE_BYTES + 5 * 4 * weights + share * task.trials * per_step


# What the periodic evaluation keeps of each step of each of its episodes on every rank (the results
# are gathered everywhere): regret and reward (float32) and action (int8), the agent's alone.
EVAL_BYTES_PER_STEP = 4 + 4 + 1


def check_memory(cfg: Config, world_size: int, local_ranks: int, available: int) -> None:
    """Refuse, before anything is allocated, a configuration whose ranks on this node would need more
    memory together than the node has available: an update's rollout and backward, and the periodic
    evaluation's gathered results."""
    task = tasks.make_task(cfg.task)
    evaluation = cfg.eval.episodes * task.trials * EVAL_BYTES_PER_STEP
    gib = lambda n: f"{n / 2**30:.1f} GiB"
    require(
        cfg.eval.every == 0 or (BASE_BYTES + evaluation) * local_ranks <= available,
        "eval.episodes",
        f"{cfg.eval.episodes} evaluation episodes keep about {gib(evaluation)} of results on each rank, "
        f"but {gib(available)} is available for {local_ranks}; evaluate fewer episodes (eval.every=0: none)",
    )
    need = rollout_bytes(cfg, world_size, task)
    require(
        need * local_ranks <= available,
        "train.batch_episodes",
        f"{cfg.train.batch_episodes} episodes of {task.trials} steps over "
        f"{world_size} rank(s) "
        f"need about {gib(need)} per rank ({gib(need * local_ranks)} for the {local_ranks} on this "
        f"node), but {gib(available)} is available; use fewer episodes per rollout "
        "(sync.accumulate keeps the update's size) or more ranks on more nodes",
    )


# Bytes of results an episode's trial leaves on every rank (gathered there): regret, reward, action
# and transition of the agent and of up to six baselines, with room for the tables made from them.
RESULT_BYTES_PER_TRIAL = 7 * 10 * 2


def evaluation_problem(episodes: int, trials: int, available: int) -> str | None:
    """Why dist_vpg.evaluate's --episodes would not fit in `available` bytes, or None."""
    need = episodes * trials * RESULT_BYTES_PER_TRIAL
    if need <= available:
        return None
    return (
        f"--episodes {episodes}: their results need about {need / 2**30:.1f} GiB, but "
        f"{available / 2**30:.1f} GiB is available; evaluate fewer episodes"
    )
