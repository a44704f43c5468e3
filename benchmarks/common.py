"""Shared helpers for the benchmarks: a result record and a robust timer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BenchResult:
    """One benchmark figure and its ratio against a reference run in the same process.

    Attributes:
        name: benchmark name (the ``<name>`` of ``bench_<name>.py``).
        value: the figure for our implementation.
        unit: unit of ``value`` (``ms``, ``s``, ``MB``...).
        reference: what the reference implementation is, in a few words.
        reference_value: the same figure for the reference.
        ratio: how many times better ours is (reference / ours for times; > 1 is faster).
        aim: the target, in words, e.g. ``"<= 15 ms"``.
        extra: further figures of the same run, in words (printed after the ratio).
        aim_max: the aim as a bound on ``value`` (None: no such bound).
        aim_ratio: the aim as a least ``ratio`` (None: no such bound).
    """

    name: str
    value: float
    unit: str
    reference: str
    reference_value: float
    ratio: float
    aim: str = ""
    extra: str = ""
    aim_max: float | None = None
    aim_ratio: float | None = None

    def holds(self, value: float | None = None, ratio: float | None = None) -> bool | None:
        """Whether the aim holds for ``value`` / ``ratio`` (default: this run's); None without a numeric aim."""
        value = self.value if value is None else value
        ratio = self.ratio if ratio is None else ratio
        checks = []
        if self.aim_max is not None:
            checks.append(value <= self.aim_max)
        if self.aim_ratio is not None:
            checks.append(ratio >= self.aim_ratio)
        return all(checks) if checks else None

    def line(self) -> str:
        tail = f"; {self.extra}" if self.extra else ""
        return f"{self.name}: {self.value:.3g} {self.unit} ({self.ratio:.2f}x vs {self.reference}){tail}"


def time_ms(fn: Callable[[], object], repeats: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds (synchronising CUDA when present)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)
