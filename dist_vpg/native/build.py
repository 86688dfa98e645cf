"""Compile kernels.c once per machine and load it, its functions typed from interface.h.

The library is built with the system C compiler (`CC`, else cc, gcc or clang) and -march=native,
cached under $DIST_VPG_NATIVE_CACHE (default: $XDG_CACHE_HOME/dist_vpg, else ~/.cache/dist_vpg),
and keyed by the sources, the compiler's version, the flags and the CPU's instruction sets: a change
of any of them builds anew, and a cluster's nodes sharing a home directory each get their own. The
ranks of a node take a file lock, so one compiles and the others wait and load its result.
DIST_VPG_NATIVE=0 turns the native path off (training then uses the torch rollout).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from dist_vpg.native.interface import HEADER, InterfaceError, bind, layout_source

SOURCE = Path(__file__).with_name("kernels.c")
# -std=c11 alone turns off fused multiply-adds (ISO C mode implies -ffp-contract=off): the kernels'
# products ran 1.45 times slower (dv_act at 64 episodes, 3.8 against 2.6 ms on this machine).
FLAGS = ["-O3", "-march=native", "-std=c11", "-ffp-contract=fast", "-shared", "-fPIC"]
PORTABLE_FLAGS = [
    "-O3",
    "-std=c11",
    "-ffp-contract=fast",
    "-shared",
    "-fPIC",
]  # where -march=native is not understood


class NativeUnavailable(RuntimeError):
    """The native library cannot be built or loaded here; the message says why and what to do."""


def compiler() -> str:
    for name in filter(None, (os.environ.get("CC"), "cc", "gcc", "clang")):
        path = shutil.which(name)
        if path:
            return path
    raise NativeUnavailable("no C compiler found (install gcc, or name one in CC)")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> Path:
    named = os.environ.get("DIST_VPG_NATIVE_CACHE")
    if named:
        return Path(named)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dist_vpg"


def _version(cc: str) -> str:
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NativeUnavailable(f"the C compiler {cc} does not run ({e})") from None
    return done.stdout


def library_path() -> Path:
    """Where this machine's build lives (built if missing)."""
    if os.environ.get("DIST_VPG_NATIVE", "1") == "0":
        raise NativeUnavailable("turned off by DIST_VPG_NATIVE=0")
    if platform.system() not in ("Linux", "Darwin"):
        raise NativeUnavailable(f"the native build supports Linux and macOS, not {platform.system()}")
    cc = compiler()
    sources = (SOURCE.read_bytes(), HEADER.read_bytes(), layout_source())
    key = hashlib.sha256(
        b"\0".join(
            x.encode() if isinstance(x, str) else x
            for x in (*sources, _version(cc), " ".join(FLAGS), _cpu_flags(), platform.machine())
        )
    ).hexdigest()[:16]
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NativeUnavailable(
            f"cannot create the build cache {folder} ({e.strerror}); set DIST_VPG_NATIVE_CACHE"
        ) from None
    target = folder / f"kernels-{key}.so"
    if target.exists():
        return target
    try:
        with open(folder / f"kernels-{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one local rank compiles; the others wait here
            if not target.exists():
                _compile(cc, target)
    except subprocess.TimeoutExpired:
        raise NativeUnavailable(f"{cc} took more than 300 s to build {SOURCE.name}") from None
    except OSError as e:
        raise NativeUnavailable(f"cannot build in {folder} ({e}); set DIST_VPG_NATIVE_CACHE") from None
    return target


def _compile(cc: str, target: Path) -> None:
    """kernels.c and the generated layout table (interface.layout_source) into one library."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    layout = Path(tmp).with_suffix(".layout.c")
    try:
        layout.write_text(layout_source())
        errors = ""
        for flags in (FLAGS, PORTABLE_FLAGS):
            command = [cc, *flags, f"-I{SOURCE.parent}", "-o", tmp, str(SOURCE), str(layout), "-lm"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            if done.returncode == 0:
                os.replace(tmp, target)
                return
            errors = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise NativeUnavailable(f"{cc} could not build {SOURCE.name}: {errors}")
    finally:
        Path(tmp).unlink(missing_ok=True)
        layout.unlink(missing_ok=True)


_loaded: ctypes.CDLL | NativeUnavailable | None = None


def load() -> ctypes.CDLL:
    """The library, built on first use, its functions typed and its layout checked against
    interface.h; raises NativeUnavailable (the same one every later call)."""
    global _loaded
    if _loaded is None:
        try:
            _loaded = bind(ctypes.CDLL(str(library_path())))
        except NativeUnavailable as e:
            _loaded = e
        except OSError as e:
            _loaded = NativeUnavailable(f"the native library does not load ({e})")
        except InterfaceError as e:
            _loaded = NativeUnavailable(str(e))
    if isinstance(_loaded, NativeUnavailable):
        raise _loaded
    return _loaded


@contextmanager
def afresh():
    """Within the block, the library is looked for, built and loaded anew (tests change the
    environment); after it, the one loaded before is back, with no second build."""
    global _loaded
    kept, _loaded = _loaded, None
    try:
        yield
    finally:
        _loaded = kept
