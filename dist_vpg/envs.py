"""The earlier name of dist_vpg.gym_adapter, the Gymnasium adapter (the tasks themselves are in
dist_vpg.tasks): `import dist_vpg.envs` and ids written as "dist_vpg.envs:dist_vpg/Bandit-v0" keep
working, with a DeprecationWarning."""

import warnings

from dist_vpg.gym_adapter import GENERIC_ID, IDS, TaskEnv, TaskVectorEnv, ids, register

__all__ = ["GENERIC_ID", "IDS", "TaskEnv", "TaskVectorEnv", "ids", "register"]

warnings.warn(
    "dist_vpg.envs is now dist_vpg.gym_adapter (the Gymnasium adapter); the old name will go",
    DeprecationWarning,
    stacklevel=2,
)
