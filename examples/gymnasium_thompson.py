"""Thompson sampling, an agent that is not dist_vpg's, playing dist_vpg's bandits through Gymnasium.

    python examples/gymnasium_thompson.py [--episodes 2000] [--arms 2]

It reads only what any agent sees in the observation (the previous action one-hot and the previous
reward), keeps Beta(1 + successes, 1 + failures) counts per arm and per episode, and pulls the arm
whose posterior draw is highest. The printed regret at trial 100 is comparable with the Thompson
row of `python -m dist_vpg.evaluate` (about 2.8 for 2 arms): the same task, other episodes.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import dist_vpg.gym_adapter  # noqa: F401  (registers the dist_vpg/ ids)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=2000, help="played 500 at a time")
    parser.add_argument("--arms", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    batch = min(500, args.episodes)
    envs = gym.make_vec(
        "dist_vpg/Bandit-v0", num_envs=batch, vectorization_mode="vector_entry_point", arms=args.arms
    )
    rng = np.random.default_rng(args.seed)
    regrets = []
    obs, _ = envs.reset(seed=args.seed)
    for _ in range(-(-args.episodes // batch)):
        wins, losses = np.zeros((batch, args.arms)), np.zeros((batch, args.arms))
        regret, ended = np.zeros(batch), False
        while not ended:
            previous, reward = obs[:, : args.arms], obs[:, args.arms]  # one-hot action, reward
            wins += previous * reward[:, None]
            losses += previous * (1 - reward[:, None])
            actions = rng.beta(1 + wins, 1 + losses).argmax(axis=1)
            obs, _, terminated, _, info = envs.step(actions)
            regret += info["regret"]
            ended = bool(terminated.all())
        regrets.append(regret)
        obs, *_ = envs.step(np.zeros(batch, dtype=np.int64))  # next-step autoreset: new episodes
    regrets = np.concatenate(regrets)[: args.episodes]
    mean, sem = regrets.mean(), regrets.std(ddof=1) / np.sqrt(len(regrets))
    print(f"Thompson sampling through gymnasium: regret {mean:.2f} ± {sem:.2f} over {len(regrets)} episodes")
    envs.close()
    return float(mean)


if __name__ == "__main__":
    main()
