"""Speed and memory benchmarks; each compares against a straightforward reference in-process.

Every module ``benchmarks/bench_<name>.py`` defines ``run() -> BenchResult``.
``python -m benchmarks`` runs them all; ``python -m benchmarks <name>`` runs one.
"""
