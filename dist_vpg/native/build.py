"""Compile the native sources once per machine and load them, their functions typed from their
headers: the runtime (kernels.c, interface.h), each task's native step (task.h) and any other C
file a unit brings (the restless players').

Each library is one translation unit: the source and, after it, a generated table of the
compiler's sizes and offsets of the structures its header declares (interface.layout_source),
which loading checks against what Python parsed. A library is built with the system C compiler
(`CC`, else cc, gcc or clang) and -march=native, cached under $DIST_VPG_NATIVE_CACHE (default:
$XDG_CACHE_HOME/dist_vpg, else ~/.cache/dist_vpg), and keyed by its sources and the headers beside
them, the compiler's version, the flags and the CPU's instruction sets: a change of any of them
builds anew, and a cluster's nodes sharing a home directory each get their own. A compiler that
rejects -march=native builds without it, under the name's `-portable` suffix; one stopped by a
signal builds nothing. The ranks of a node
take a file lock, so one compiles and the others wait and load its result. DIST_VPG_NATIVE=0 turns
the native path off (training then uses the torch rollout).
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
from typing import NamedTuple

from dist_vpg.native.interface import DECLARED, Declared, InterfaceError, bind, layout_source

SOURCE = Path(__file__).with_name("kernels.c")
# -std=c11 alone turns off fused multiply-adds (ISO C mode implies -ffp-contract=off): the kernels'
# products ran 1.45 times slower (dv_act at 64 episodes, 3.8 against 2.6 ms on this machine).
# -fno-math-errno: sqrtf, which never sets errno on what the kernels give it, becomes one vector
# instruction instead of a call per element (the RMSprop step was 0.09 ms, mostly that); the IEEE
# square root is the same number either way.
# -mprefer-vector-width=512 (x86-64 only; the portable build goes without it): the loops the
# compiler vectorizes (then the gates' nonlinearities and the cell, now written on vectors of the
# target's width in kernels.c; still the optimizer) in 512-bit registers where the CPU has them,
# 1.03-1.10 times faster in three measurements of bench_kernels on AMD EPYC with AVX-512
# (docs/performance.md); the same numbers bit for bit. Without AVX-512 it changes nothing.
WIDE = ["-mprefer-vector-width=512"] if platform.machine() in ("x86_64", "AMD64") else []
FLAGS = ["-O3", "-march=native", *WIDE, "-std=c11", "-ffp-contract=fast", "-fno-math-errno", "-shared"]
FLAGS.append("-fPIC")
PORTABLE_FLAGS = [
    "-O3",
    "-std=c11",
    "-ffp-contract=fast",
    "-fno-math-errno",
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


class Source(NamedTuple):
    """One library to build: its C file, what its headers declare, and the flags it adds."""

    path: Path
    declared: Declared
    extra_flags: tuple[str, ...] = ()

    def unit(self) -> str:
        """The translation unit compiled: the source, then its layout table."""
        return f'#include "{self.path.resolve()}"\n' + layout_source(self.declared)


RUNTIME = Source(SOURCE, DECLARED)


def library_path(source: Source = RUNTIME) -> Path:
    """Where this machine's build of `source` lives (built if missing)."""
    if os.environ.get("DIST_VPG_NATIVE", "1") == "0":
        raise NativeUnavailable("turned off by DIST_VPG_NATIVE=0")
    if platform.system() not in ("Linux", "Darwin"):
        raise NativeUnavailable(f"the native build supports Linux and macOS, not {platform.system()}")
    cc = compiler()
    headers = sorted({*SOURCE.parent.glob("*.h"), *source.path.parent.glob("*.h")})
    texts = (source.path.read_bytes(), source.unit(), *(h.read_bytes() for h in headers))
    key = hashlib.sha256(
        b"\0".join(
            x.encode() if isinstance(x, str) else x
            for x in (
                *texts,
                _version(cc),
                " ".join(FLAGS + list(source.extra_flags)),
                _cpu_flags(),
                platform.machine(),
            )
        )
    ).hexdigest()[:16]
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NativeUnavailable(
            f"cannot create the build cache {folder} ({e.strerror}); set DIST_VPG_NATIVE_CACHE"
        ) from None
    target = folder / f"{source.path.stem}-{key}.so"
    portable = _portable(target)
    if target.exists():
        return target
    try:
        with open(folder / f"{source.path.stem}-{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one local rank compiles; the others wait here
            if not target.exists() and not portable.exists():
                _compile(cc, source, target)
    except subprocess.TimeoutExpired:
        raise NativeUnavailable(f"{cc} took more than 300 s to build {source.path.name}") from None
    except OSError as e:
        raise NativeUnavailable(f"cannot build in {folder} ({e}); set DIST_VPG_NATIVE_CACHE") from None
    return target if target.exists() else portable


def _portable(target: Path) -> Path:
    """Where the build without -march=native lives, kept apart from `target` so that it is never
    taken for the native build."""
    return target.with_name(f"{target.stem}-portable.so")


def _compile(cc: str, source: Source, target: Path) -> None:
    """Build `source` into `target`; where the compiler rejects -march=native, into its portable
    name. A compiler stopped by a signal (an interrupted first run, say) builds nothing: falling
    back then would keep a library several times slower for good."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.stem, suffix=".tmp")
    os.close(fd)
    unit = Path(tmp).with_suffix(".c")
    try:
        unit.write_text(source.unit())
        errors = ""
        for flags, built in ((FLAGS, target), (PORTABLE_FLAGS, _portable(target))):
            command = [cc, *flags, *source.extra_flags, f"-I{SOURCE.parent}", f"-I{source.path.parent}"]
            done = subprocess.run(
                [*command, "-o", tmp, str(unit), "-lm"], capture_output=True, text=True, timeout=300
            )
            if done.returncode == 0:
                os.replace(tmp, built)
                return
            if done.returncode < 0:
                raise NativeUnavailable(
                    f"{cc} was stopped by signal {-done.returncode} while building {source.path.name}; "
                    "the next run builds it again"
                )
            lines = done.stderr.strip().splitlines() or ["no message"]
            errors = next((line for line in lines if "error" in line), lines[0])
        raise NativeUnavailable(f"{cc} could not build {source.path.name}: {errors}")
    finally:
        Path(tmp).unlink(missing_ok=True)
        unit.unlink(missing_ok=True)


# by source path and added flags: a variant of the runtime's source with other flags is a library of
# its own (benchmarks/bench_kernels.py loads both in one process)
_loaded: dict[tuple[Path, tuple[str, ...]], ctypes.CDLL | NativeUnavailable] = {}


def load(source: Source = RUNTIME) -> ctypes.CDLL:
    """The library of `source` (the runtime by default), built on first use, its functions typed
    and its layout checked against its headers; raises NativeUnavailable (the same one every later
    call). Every library but the runtime needs the runtime to be available too."""
    key = (source.path, source.extra_flags)
    if key not in _loaded:
        try:
            if key != (SOURCE, ()):  # every other library needs the runtime
                load()
            _loaded[key] = bind(ctypes.CDLL(str(library_path(source))), source.declared)
        except NativeUnavailable as e:
            _loaded[key] = e
        except OSError as e:
            _loaded[key] = NativeUnavailable(f"the native library {source.path.name} does not load ({e})")
        except InterfaceError as e:
            _loaded[key] = NativeUnavailable(str(e))
    found = _loaded[key]
    if isinstance(found, NativeUnavailable):
        raise found
    return found


@contextmanager
def afresh():
    """Within the block, the libraries are looked for, built and loaded anew (tests change the
    environment); after it, the ones loaded before are back, with no second build."""
    kept = dict(_loaded)
    _loaded.clear()
    try:
        yield
    finally:
        _loaded.clear()
        _loaded.update(kept)
