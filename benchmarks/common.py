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


@dataclass(frozen=True)
class TreeRun:
    """A command run with its whole process tree watched.

    Attributes:
        seconds: wall time.
        peak_pss_mb: the largest sum of the tree's proportional set sizes seen (memory shared between processes,
            Ray's object store for one, counted once).
        peak_rss_mb: the largest sum of resident set sizes seen (shared memory counted in every process).
        processes: the most processes seen at once.
        returncode: the command's exit status.
    """

    seconds: float
    peak_pss_mb: float
    peak_rss_mb: float
    processes: int
    returncode: int


def run_tree(cmd: list[str], interval: float = 0.2, env: dict[str, str] | None = None, **popen: object) -> TreeRun:
    """Run ``cmd`` and sample the memory of it and every descendant (Ray's raylet, GCS and workers included) every
    ``interval`` seconds until it exits."""
    import subprocess

    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, **popen)  # noqa: S603 - the benchmark's own command
    peak_pss = peak_rss = 0.0
    most = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        pss = rss = 0
        procs = [root]
        try:
            procs += root.children(recursive=True)
        except psutil.Error:
            pass
        for p in procs:
            try:
                info = p.memory_full_info()
            except psutil.Error:
                continue
            pss += getattr(info, "pss", info.rss)
            rss += info.rss
        peak_pss, peak_rss, most = max(peak_pss, pss / 2**20), max(peak_rss, rss / 2**20), max(most, len(procs))
        time.sleep(interval)
    return TreeRun(time.perf_counter() - t0, peak_pss, peak_rss, most, proc.returncode)


def run_command(cmd: list[str], memory: bool = False) -> tuple[float, float, int]:
    """Run ``cmd`` (output discarded): (wall seconds, the process tree's peak PSS in MB or 0, exit status). Memory is
    sampled (every 0.5 s) only when asked: sampling a tree of Ray processes slows a 2-core machine, so timing runs
    and memory runs are separate."""
    import subprocess

    if memory:
        run = run_tree(cmd, interval=0.5, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return run.seconds, run.peak_pss_mb, run.returncode
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode  # noqa: S603
    return time.perf_counter() - t0, 0.0, rc
