"""Run benchmarks: ``python -m benchmarks [name ...] [--runs N]``.

Each benchmark runs ``--runs`` times (default 5; each run already times its own repeats and its
reference in the same process); the table gives the median figure and ratio with their min and max
over the runs, and whether the aim holds for the median, so that one disturbed run on a busy
machine does not flip a verdict.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import statistics
import sys

import torch

import benchmarks


def available() -> list[str]:
    return sorted(
        m.name[len("bench_") :] for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    from worldstereo.runtime import keep_freed_memory

    keep_freed_memory()
    names = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(names)})")
    parser.add_argument("--runs", type=int, default=5, help="runs per benchmark (default 5); the table shows medians")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    rows = []
    for name in args.names or names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        runs = []
        for i in range(args.runs):
            result = module.run()
            print(f"[{i + 1}/{args.runs}] {result.line()}", flush=True)
            runs.append(result)
        rows.append(summarise(runs))
    print()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}; {args.runs} runs each: median [min, max]")
    print("| benchmark | figure | reference | ref figure | ratio | aim | holds |")
    print("|---|---:|---|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['value']:.3g} [{r['value_min']:.3g}, {r['value_max']:.3g}] {r['unit']} | "
              f"{r['reference']} | {r['reference_value']:.3g} {r['unit']} | {r['ratio']:.2f}x "
              f"[{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] | {r['aim']} | {r['holds']} |")
    return 0


def summarise(runs: list) -> dict:
    """Median, min and max of the figure and the ratio over runs, and the aim's verdict for the medians."""
    values = [r.value for r in runs]
    ratios = [r.ratio for r in runs]
    first = runs[0]
    value, ratio = statistics.median(values), statistics.median(ratios)
    verdict = first.holds(value, ratio)
    return {
        "name": first.name, "unit": first.unit, "reference": first.reference, "aim": first.aim,
        "value": value, "value_min": min(values), "value_max": max(values),
        "ratio": ratio, "ratio_min": min(ratios), "ratio_max": max(ratios),
        "reference_value": statistics.median(r.reference_value for r in runs),
        "holds": {True: "yes", False: "no", None: "-"}[verdict],
    }


if __name__ == "__main__":
    sys.exit(main())
