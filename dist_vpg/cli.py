"""What every command (train, evaluate, inspect, play) shares on its command line: a refusal is one
line, printed by rank 0 alone under torchrun, with exit status 2; never a usage dump per rank, never
a traceback of ours.
"""

from __future__ import annotations

import argparse
import sys
import time

from dist_vpg import distributed
from dist_vpg.config import printable

SEED_LIMIT = 2**63  # seeds are hashed as 64-bit words (dist_vpg/noise.py)


class Parser(argparse.ArgumentParser):
    """`name` is the module (dist_vpg.train); usage shows `python -m name`."""

    def __init__(self, name: str, description: str | None, epilog: str | None = None):
        super().__init__(
            prog=f"python -m {name}",
            description=description,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        self.name = name

    def error(self, message: str):
        sys.exit(refuse(self.name, f"{message} (--help for usage)"))


# How long another rank waits before it exits with a refusal that rank 0 says: torchrun stops every
# rank once one has exited, and a rank quicker to refuse than rank 0 would silence it (seen in CI).
REFUSAL_GRACE_S = 5.0


def refuse(name: str, message: str) -> int:
    """Print `name: message` on rank 0, on one line whatever the message holds (characters that do
    not print are escaped); the exit status to return (2). The other ranks say nothing, and give
    rank 0 the time to say it before they exit."""
    world = distributed.world_from_env()
    if world.is_main:
        print(f"{printable(name)}: {printable(message)}", file=sys.stderr, flush=True)
    elif world.world_size > 1:
        time.sleep(REFUSAL_GRACE_S)
    return 2


def seed(text: str) -> int:
    """argparse type: an integer in [0, 2**63)."""
    value = whole(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"a seed lies in [0, 2**63), not {text}")
    return value


def whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def at_least(minimum: int):
    """argparse type: an integer >= minimum."""

    def parse(text: str) -> int:
        value = whole(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {text}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse
