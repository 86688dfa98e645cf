"""The suite's layers. `-m "not slow and not dist"` is the unit layer: it starts no process and no
training run, and a test of it that tries fails at once, naming the marker it needs."""

import contextlib
import multiprocessing.process
import subprocess

import numpy as np
import pytest
import torch

from dist_vpg import native, noise, tasks, train
from dist_vpg.tasks.restless import players_c

# One intra-op thread in the test process: the multi-process tests start ranks of their own.
torch.set_num_threads(1)

LAYER_MARKERS = ("slow", "dist")


class LayerError(AssertionError):
    """A unit test started a process or a training run."""


def _refuse(what: str):
    def refused(*args, **kwargs):
        raise LayerError(
            f"this test {what}: mark it slow (a process or a training run) or dist (several ranks), "
            'so that -m "not slow and not dist" stays the unit layer'
        )

    return refused


@pytest.fixture(scope="session", autouse=True)
def _native_built():
    """The native libraries (the runtime, each task's step, the restless players') are compiled (a
    compiler process each) once, before any test: a unit test that uses them starts nothing of its own."""
    native.available()
    for unit in tasks.TASKS.values():
        if getattr(unit, "native_step", None) is not None:
            with contextlib.suppress(native.NativeUnavailable):
                unit.native_step.library()
    players_c.available()
    noise.uniforms((0,), np.arange(2), 1, 1)  # noise.c


@pytest.fixture(scope="session", autouse=True)
def _font_cache_built():
    """matplotlib builds its font cache on first import where it has none (a new machine), asking
    fc-list in a process: done once here, before the unit tests that draw figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


@pytest.fixture(autouse=True)
def _unit_layer_starts_nothing(request, monkeypatch):
    if any(request.node.get_closest_marker(m) for m in LAYER_MARKERS):
        return
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("starts a process (subprocess)"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", _refuse("starts a process"))
    monkeypatch.setattr(train, "train", _refuse("starts a training run"))
