"""How a batch grows with nodes, simulated on this machine with ``ray.cluster_utils.Cluster``.

The batch (the four example photos twice, 8 inputs, one ``orbit_left`` path of 8 frames at 128 x 96 each, the
offline prior and Telea) runs through ``worldstereo batch --ray-address`` on a cluster of 1, 2 and 4 simulated
nodes of 1 CPU each (a head and workers, every one a raylet of its own). Figure: throughput (inputs per minute) on
2 nodes; reference: on 1 node (ratio = speed-up). Printed beside: 4 nodes, how many inputs each node ran (the
scheduler spreads them), and a run on 2 nodes whose second node is removed after the first input finishes: no
input is lost (the removed node's tasks are retried on the head).

The nodes share this machine's 2 cores: 4 nodes cannot beat 2 here; on a real cluster each node brings its own.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import BenchResult

REPO = Path(__file__).resolve().parents[1]
INPUTS = sorted(str(p) for p in (REPO / "assets" / "examples").glob("*/*/image.png")) * 2
OPTIONS = ["--preset", "orbit_left", "--frames", "8", "--size", "128x96", "--fill", "telea", "--depth-backend",
           "prior", "--quiet"]


def _cluster(nodes: int):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1) for _ in range(nodes - 1)]
    cluster.wait_for_nodes()
    return cluster, workers


def _batch(cluster, out: Path, remove=None) -> tuple[float, list[dict]]:
    """Run the batch on ``cluster``; ``remove``: a node to remove once the first input finished."""
    import ray

    from worldstereo.cli import main

    ray.shutdown()
    ray.init(address=cluster.address, log_to_driver=False)
    stop = threading.Event()

    def remover() -> None:
        while not stop.is_set():
            try:
                rows = json.loads((out / "summary.json").read_text())
            except (OSError, ValueError):
                rows = []
            if any(r["status"] == "complete" for r in rows):
                cluster.remove_node(remove)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=remover, daemon=True) if remove is not None else None
    t0 = time.perf_counter()
    if watcher is not None:
        watcher.start()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["batch", *INPUTS, *OPTIONS, "--out", str(out), "--ray-address", cluster.address])
    seconds = time.perf_counter() - t0
    stop.set()
    ray.shutdown()
    rows = json.loads((out / "summary.json").read_text())
    if rc != 0:
        raise RuntimeError(f"batch failed: {[r['error'] for r in rows if r['status'] != 'complete']}")
    return seconds, rows


def _spread(rows: list[dict]) -> str:
    counts = Counter(r.get("node", "?") for r in rows)
    return "/".join(str(c) for _, c in counts.most_common())


def run() -> BenchResult:
    throughput, spread = {}, {}
    with tempfile.TemporaryDirectory() as d:
        for n in (1, 2, 4):
            cluster, _ = _cluster(n)
            try:
                seconds, rows = _batch(cluster, Path(d) / f"n{n}")
            finally:
                cluster.shutdown()
            throughput[n] = 60.0 * len(INPUTS) / seconds
            spread[n] = _spread(rows)
        cluster, workers = _cluster(2)
        try:
            _, rows = _batch(cluster, Path(d) / "removed", remove=workers[0])
        finally:
            cluster.shutdown()
        lost = sum(1 for r in rows if r["status"] != "complete")
        frames_ok = all(r["frames"] == 8 for r in rows)
    return BenchResult(
        name="scaling",
        value=throughput[2],
        unit="inputs/min",
        reference="the same batch on 1 node",
        reference_value=throughput[1],
        ratio=throughput[2] / throughput[1],
        aim="figures for the README",
        extra=(f"{len(INPUTS)} inputs; 1 node {throughput[1]:.1f}/min, 2 nodes {throughput[2]:.1f}/min "
               f"(inputs per node {spread[2]}), 4 nodes on these 2 cores {throughput[4]:.1f}/min (per node "
               f"{spread[4]}); a node removed mid-batch: {len(rows) - lost} of {len(rows)} complete, "
               f"{'every' if frames_ok else 'NOT every'} result whole, inputs per node {_spread(rows)}"),
    )
