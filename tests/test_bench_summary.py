"""The benchmark table's medians and verdicts (no benchmark is run here)."""

from __future__ import annotations

from benchmarks.__main__ import summarise
from benchmarks.common import BenchResult


def _run(value: float, ref: float) -> BenchResult:
    return BenchResult("ggm_update", value, "ms", "cKDTree", ref, ref / value, "<= 100 ms and >= 5x",
                       aim_max=100.0, aim_ratio=5.0)


def test_one_disturbed_run_does_not_flip_the_verdict():
    runs = [_run(90, 500), _run(95, 480), _run(300, 520), _run(92, 470), _run(88, 510)]  # run 3 was disturbed
    row = summarise(runs)
    assert row["value"] == 92 and (row["value_min"], row["value_max"]) == (88, 300)
    assert row["holds"] == "yes" and row["ratio_min"] < 5 < row["ratio"]
    assert summarise([_run(120, 700)] * 5)["holds"] == "no"  # over 100 ms
    assert summarise([_run(90, 300)] * 5)["holds"] == "no"  # under 5x
    free = BenchResult("x", 1.0, "ms", "ref", 2.0, 2.0)
    assert summarise([free])["holds"] == "-" and free.holds() is None
