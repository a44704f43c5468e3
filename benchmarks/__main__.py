"""Run benchmarks: ``python -m benchmarks [name ...]``; prints one line per benchmark, then a table."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import sys

import torch

import benchmarks


def available() -> list[str]:
    return sorted(
        m.name[len("bench_") :] for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(names)})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    results = []
    for name in args.names or names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        result = module.run()
        print(result.line(), flush=True)
        results.append(result)
    print()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"| {'benchmark':<22} | {'figure':>12} | {'reference':<40} | {'ref figure':>12} | {'ratio':>7} | aim |")
    print(f"|{'-' * 24}|{'-' * 14}|{'-' * 42}|{'-' * 14}|{'-' * 9}|-----|")
    for r in results:
        print(f"| {r.name:<22} | {r.value:>9.3g} {r.unit:<2} | {r.reference:<40} | "
              f"{r.reference_value:>9.3g} {r.unit:<2} | {r.ratio:>6.2f}x | {r.aim} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
