"""The benchmarks' CUDA paths against their CPU results: ``python -m benchmarks.cuda_check``.

For the splat, the GGM update, the GGM query and the SSM attention, each benchmark's own scene runs
on the CPU and on ``--device`` (default ``cuda``): the device's median time (synchronised, as
``benchmarks.common.time_ms``) against the CPU's, and how far apart their results are:

- ``splat``: share of pixels whose winning point differs, largest colour difference;
- ``ggm_update``: the torch (device) merge against the compiled CPU merge: merged and added counts
  (must be equal), largest position difference;
- ``ggm_query``: ``cuda_knn`` on the device against ``kd_tree`` on the CPU, largest feature difference;
- ``knn``: the grid k-NN alone (100K queries, k = 32, 1M points; built and queried cold) against
  ``kd_tree`` on every core: share of identical indices, largest distance difference;
- ``ssm_attention``: largest output and weight differences.

Each row says whether its results are equal within tolerance (``ok``). Prints a table, then one
JSON line; exits 1 if a result differs, 2 without the device. ``--device cpu`` runs the same code on
the CPU twice (what the tests do, at reduced sizes).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

#: largest allowed differences (float32 on both sides; TF32 matmuls are switched off on CUDA)
TOLERANCE = {"splat": 1e-3, "ggm_update": 1e-5, "ggm_query": 1e-4, "knn": 1e-4, "ssm_attention": 1e-4}
#: the k-NN aim's sizes (issue 26): 100K queries, k = 32, into 1M points on a surface
KNN_POINTS, KNN_QUERIES, KNN_K = 1_000_000, 100_000, 32


@dataclass(frozen=True)
class DeviceRow:
    """One benchmark's device run against its CPU run."""

    name: str
    cpu_ms: float
    device_ms: float
    difference: float
    detail: str
    ok: bool

    def line(self) -> str:
        return (f"| {self.name} | {self.cpu_ms:.3g} ms | {self.device_ms:.3g} ms | {self.cpu_ms / self.device_ms:.2f}x | "
                f"{self.difference:.2e} | {self.detail} | {'ok' if self.ok else 'DIFFERS'} |")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int = 5) -> float:
    fn()  # warm-up (kernels, caches)
    samples = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def check_splat(device: torch.device) -> DeviceRow:
    from benchmarks.bench_splat import scene
    from worldstereo.geometry import splat_points

    points, colors, cam = scene()
    cpu = torch.device("cpu")
    runs = []
    for dev in (cpu, device):
        p, c, k = points.to(dev), colors.to(dev), cam.to(dev)
        runs.append((_median_ms(lambda p=p, c=c, k=k: splat_points(p, c, k), dev), splat_points(p, c, k)))
    (cpu_ms, a), (dev_ms, b) = runs
    differ = float((a.point_ids != b.point_ids.cpu()).float().mean())
    both = (a.point_ids >= 0) & (a.point_ids == b.point_ids.cpu())
    color = float((a.image - b.image.cpu()).abs().amax(-3)[both].max()) if both.any() else 0.0  # over channels
    return DeviceRow("splat", cpu_ms, dev_ms, color, f"{differ:.4%} of pixels won by another point",
                     differ <= TOLERANCE["splat"] and color <= 1e-5)


def check_ggm_update(device: torch.device) -> DeviceRow:
    import benchmarks.bench_ggm_update as bench
    from worldstereo.memory.global_geometric import GlobalGeometricMemory

    stored, new = bench._scene()
    pose = torch.eye(4)
    pose[2, 3] = 5.0
    base = GlobalGeometricMemory(max_points=2 * bench.NUM_STORED)
    base.initialize(stored)
    base.update(torch.full((1, 3), 100.0), pose, merge_threshold=bench.THRESHOLD)
    from worldstereo.memory import ggm_storage

    out = []
    for side, dev in (("host", torch.device("cpu")), ("device", device)):
        # the device side runs the torch path (on the CPU too, with --device cpu); the host side the compiled one
        ggm_storage.TORCH_PATH_ON_CPU = side == "device"
        try:
            start = copy.deepcopy(base).to(dev)
            pts = new.to(dev)
            samples = []
            for _ in range(3):
                mem = copy.deepcopy(start)
                _sync(dev)
                t0 = time.perf_counter()
                stats = mem.update(pts, pose.to(dev), merge_threshold=bench.THRESHOLD)
                _sync(dev)
                samples.append((time.perf_counter() - t0) * 1e3)
        finally:
            ggm_storage.TORCH_PATH_ON_CPU = False
        out.append((statistics.median(samples), stats, mem.point_cloud.cpu(), mem.observation_counts.cpu()))
    (cpu_ms, s_cpu, p_cpu, n_cpu), (dev_ms, s_dev, p_dev, n_dev) = out
    same_counts = s_cpu == s_dev and torch.equal(n_cpu, n_dev)
    diff = float((p_cpu - p_dev).abs().max()) if p_cpu.shape == p_dev.shape else float("inf")
    return DeviceRow("ggm_update", cpu_ms, dev_ms, diff,
                     f"merged {s_dev['num_merged']} (cpu {s_cpu['num_merged']}), added {s_dev['num_added']}",
                     same_counts and diff <= TOLERANCE["ggm_update"])


def check_ggm_query(device: torch.device) -> DeviceRow:
    from benchmarks.bench_ggm_query import scene
    from worldstereo.memory.global_geometric import GlobalGeometricMemory

    pts, queries, cam, k = scene()
    out = []
    for dev, index in ((torch.device("cpu"), "kd_tree"), (device, "cuda_knn" if device.type == "cuda" else "kd_tree")):
        mem = GlobalGeometricMemory(num_neighbors=k, spatial_index=index).to(dev)
        mem.initialize(pts.to(dev))
        q, c = queries.to(dev), cam.to(dev)

        def run(mem=mem, q=q, c=c) -> torch.Tensor:
            mem._changed()  # cold: the k-NN index is rebuilt, as in the benchmark
            with torch.no_grad():
                return mem.query(q, c, "mean")

        out.append((_median_ms(run, dev, repeats=3), run().cpu(), index))
    (cpu_ms, a, _), (dev_ms, b, index) = out
    diff = float((a - b).abs().max())
    return DeviceRow("ggm_query", cpu_ms, dev_ms, diff, f"{index} vs kd_tree", diff <= TOLERANCE["ggm_query"])


def check_knn(device: torch.device) -> DeviceRow:
    """The grid k-NN on the device (``cuda_knn`` on CUDA) against scipy's k-d tree on every CPU thread."""
    import numpy as np

    from worldstereo.memory.spatial_index import GridKNNIndex, KDTreeIndex
    from worldstereo.threads import apply_threads, available_cores

    rng = np.random.default_rng(0)
    xy = rng.random((KNN_POINTS, 2)) * 30.0
    pts = torch.from_numpy(np.stack([xy[:, 0], xy[:, 1], np.sin(xy[:, 0])], 1).astype(np.float32))
    q = pts[torch.from_numpy(rng.integers(0, KNN_POINTS, KNN_QUERIES))] + torch.from_numpy(
        rng.normal(0, 0.01, (KNN_QUERIES, 3)).astype(np.float32))
    before = torch.get_num_threads()
    apply_threads(available_cores())  # the k-d tree at its best: every core
    try:
        tree = KDTreeIndex()
        cpu_ms = _median_ms(lambda: tree.build(pts).query(q, KNN_K), torch.device("cpu"), repeats=3)
        ref = tree.build(pts).query(q, KNN_K)
    finally:
        apply_threads(before)
    grid = GridKNNIndex(device)
    pd, qd = pts.to(device), q.to(device)
    dev_ms = _median_ms(lambda: grid.build(pd).query(qd, KNN_K), device, repeats=3)  # build + query, cold
    got = grid.build(pd).query(qd, KNN_K)
    same = float((got.indices.cpu() == ref.indices).float().mean())
    # ties aside: the distances of the neighbours found, rank by rank
    diff = float((got.distances.cpu() - ref.distances).abs().max())
    return DeviceRow("knn", cpu_ms, dev_ms, diff, f"{KNN_QUERIES:,} queries, k={KNN_K}, {KNN_POINTS:,} points; "
                     f"{same:.4%} same indices", diff <= TOLERANCE["knn"] and same > 0.999)


def check_ssm_attention(device: torch.device) -> DeviceRow:
    from benchmarks.bench_ssm_attention import build_scene

    memory, query, points, camera = build_scene()
    out = []
    for dev in (torch.device("cpu"), device):
        mem, q, p, c = copy.deepcopy(memory).to(dev), query.to(dev), points.to(dev), camera.to(dev)

        def run(mem=mem, q=q, p=p, c=c) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                return mem.constrained_attention(q, p, c)

        ms = _median_ms(run, dev)
        output, weights = run()
        out.append((ms, output.cpu(), weights.cpu()))
    (cpu_ms, o_cpu, w_cpu), (dev_ms, o_dev, w_dev) = out
    diff = max(float((o_cpu - o_dev).abs().max()), float((w_cpu - w_dev).abs().max()))
    attended = int((w_cpu > 0).sum())
    return DeviceRow("ssm_attention", cpu_ms, dev_ms, diff, f"{attended} attended pairs (cpu), "
                     f"{int((w_dev > 0).sum())} (device)", diff <= TOLERANCE["ssm_attention"])


CHECKS = {"splat": check_splat, "ggm_update": check_ggm_update, "ggm_query": check_ggm_query, "knn": check_knn,
          "ssm_attention": check_ssm_attention}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cuda_check", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"checks to run (default: all of {', '.join(CHECKS)})")
    parser.add_argument("--device", default="cuda", help="device to compare with the CPU (default cuda)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in CHECKS]
    if unknown:
        parser.error(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check here", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 on both sides
        torch.backends.cudnn.allow_tf32 = False
    from worldstereo.runtime import keep_freed_memory

    keep_freed_memory()
    rows = []
    for name in args.names or list(CHECKS):
        row = CHECKS[name](device)
        print(f"  {name}: {row.detail}", flush=True)
        rows.append(row)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\ndevice: {name}; torch {torch.__version__}; CPU figures with {torch.get_num_threads()} threads")
    print("| benchmark | CPU | device | speed-up | largest difference | detail | result |")
    print("|---|---:|---:|---:|---:|---|---|")
    for row in rows:
        print(row.line())
    print(json.dumps({"device": name, "rows": [asdict(r) for r in rows]}))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
