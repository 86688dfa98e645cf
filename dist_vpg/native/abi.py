"""What a task's unit hands the native runtime: its C step (`NativeStep`, the file beside the unit
that dist_vpg/native/task.h's contract describes) and the state it fills in from the torch task's
reset (`floats`, `longs`). Here, below the tasks, so that each task that has a native step brings
it without the runtime knowing any task by name or state."""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from dist_vpg.native.build import Source, load
from dist_vpg.native.interface import TASK_CONTRACT, Declared, InterfaceError, structs_in

# A task's step is built as torch computes the task's torch step, without fused multiply-adds: a
# restless p that rounded differently would drift away from the torch task's.
STEP_FLAGS = ("-ffp-contract=off",)


class NativeStep:
    """A task's native step: `name`, a C file beside the unit's module `unit_file` (pass __file__),
    that declares one state struct (`State`, parsed into ctypes) and defines task.h's functions. Its
    library is built on first use (`library`), with the struct's layout checked against the C
    compiler's."""

    def __init__(self, unit_file: str | Path, name: str):
        self.path = Path(unit_file).with_name(name)
        structs = structs_in(self.path.read_text())
        if len(structs) != 1:
            raise InterfaceError(
                f"{self.path} declares {len(structs)} structs; a task's native step declares one, its state"
            )
        (self.State,) = structs.values()
        declared = Declared({}, {**TASK_CONTRACT.structs, **structs}, TASK_CONTRACT.functions)
        self.source = Source(self.path, declared, STEP_FLAGS)
        self._function: int | None = None

    def library(self) -> ctypes.CDLL:
        """Built and loaded on first use; raises dist_vpg.native.NativeUnavailable with the reason."""
        return load(self.source)

    def function(self) -> int:
        """The address of its dv_task_step, as the acting loop calls it."""
        if self._function is None:
            self._function = ctypes.cast(self.library().dv_task_step, ctypes.c_void_p).value
        return self._function


def floats(t: torch.Tensor, keep: list) -> int:
    """The address of a float32, contiguous copy of `t`, kept alive in `keep` until the C call returns."""
    t = t.float().contiguous().clone()
    keep.append(t)
    return t.data_ptr()


def longs(t: torch.Tensor, keep: list) -> int:
    """As `floats`, for int64 (the kernel's per-episode flags and indices, updated in place)."""
    t = t.to(torch.int64).contiguous().clone()
    keep.append(t)
    return t.data_ptr()
