"""The earlier name of dist_vpg.inspect_update, which looks inside one A2C update. The name
shadowed the standard library's `inspect` wherever dist_vpg/ itself is on the path (a script run
from that folder). `python -m dist_vpg.inspect ...` and `from dist_vpg import inspect` keep working,
with a DeprecationWarning; the old name will go."""

import sys
import warnings

from dist_vpg.inspect_update import main

__all__ = ["main"]

MOVED = "dist_vpg.inspect is now dist_vpg.inspect_update; the old name will go"

if __name__ == "__main__":
    print(f"dist_vpg: {MOVED}", file=sys.stderr)
    sys.exit(main())
warnings.warn(MOVED, DeprecationWarning, stacklevel=2)
