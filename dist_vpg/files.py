"""Directories a command writes into, checked before any work is done.

A path that cannot hold files (below a regular file, a regular file itself, on a read-only or
virtual filesystem, without permission) is one ConfigError naming the key and the reason, rather
than an OSError traceback after minutes of training or evaluation.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dist_vpg import distributed
from dist_vpg.config import ConfigError


def writable_dir(path: Path, key: str) -> Path:
    """Create `path` (and its parents) if needed and prove a file can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".dist_vpg-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        if isinstance(e, FileExistsError) or (path.exists() and not path.is_dir()):
            reason = "it is a file, not a directory"
        raise ConfigError(f"{key}: cannot write into {path} ({reason}); choose another directory") from None
    return path


class WriteError(RuntimeError):
    """A file of a run could not be written (a full disk, say); the message names it."""


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file, fsynced and renamed into place: the file is
    either the old one or the new one, never a part, and no temporary file is left behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"cannot write {path} ({e.strerror or type(e).__name__})") from None


def written_by_main(world: distributed.World, write) -> None:
    """Rank 0 runs write(); on a failure (a full disk) every rank raises the same WriteError at the
    same update, so no rank is left waiting in a collective."""
    distributed.decided_by_main(world, write, (WriteError,))
