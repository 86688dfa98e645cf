"""Wall-clock time per phase of the update, kept per update so medians can be reported."""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager


class Timings:
    def __init__(self):
        self.samples: dict[str, list[float]] = defaultdict(list)

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.samples[name].append(time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        if not math.isnan(seconds):
            self.samples[name].append(seconds)

    def medians(self) -> dict[str, float]:
        return {name: statistics.median(v) for name, v in self.samples.items() if v}
