"""Load and leaks of the app, through its public API (``gradio_client``), in one process.

1. ``--sessions`` concurrent clients (default 8), each loading a procedural sample and generating a
   ``--frames``-frame path (default 21): first-frame latency p50 / p95 (from the Generate request
   to the first streamed frame), total wall time, peak RSS of the process, and whether every session
   got only its own frames (each session's frame count and frame ids are checked against its own
   model, and no two sessions share a model or a folder).
2. ``--generations`` generations in one session (default 30), each followed by Undo, so the memories
   return to the same size: RSS after the first vs after the last (growth is leakage, not memory);
   and the same number without Undo, where the memories grow until their bounds.

The reference is the server's RSS right after start-up (same process). Run:
``python -m benchmarks.load_sessions`` (a few minutes on 2 cores). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _concurrent(args, one, results: dict, built, base_rss: float) -> dict:
    """Step 1: ``args.sessions`` clients at once; returns the figures."""
    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    sessions = [built.sessions.peek(r["hash"]) for r in results.values()]
    if any(s is None for s in sessions):
        raise RuntimeError("a session ended before it was checked")
    own = all(len(s.frames) == args.frames and s.model.path_counter == 1 for s in sessions)
    own &= len({id(s.model) for s in sessions}) == len(sessions) and len({s.directory for s in sessions}) == len(sessions)
    ids_ok = all([f.frame_id for f in s.frames] == list(range(1, args.frames + 1)) for s in sessions)
    firsts = sorted(r["first"] for r in results.values() if r["first"] is not None)
    load = {
        "sessions": args.sessions,
        "frames_each": args.frames,
        "size": args.size,
        "first_frame_p50_s": round(statistics.median(firsts), 2),
        "first_frame_p95_s": round(firsts[min(len(firsts) - 1, int(round(0.95 * (len(firsts) - 1))))], 2),
        "total_s": round(wall, 1),
        "peak_rss_mb": round(_peak_mb()),
        "rss_at_start_mb": round(base_rss),
        "every_session_only_its_own_frames": bool(own and ids_ok),
    }
    return load


def _leak_client(url: str, tmp: str, args, ready, go) -> None:
    from gradio_client import Client

    c = Client(url, verbose=False, download_files=str(Path(tmp) / "leak"))
    c.predict("scene: room", args.size, "auto", "warp", "telea", api_name="/load_sample")
    for undo in (True, False):
        for _ in range(args.generations):
            list(c.submit("preset", "orbit_right", 0.2, False, args.frames, api_name="/generate"))
            if undo:
                c.predict(api_name="/undo")
            ready.put(1)
            go.get()
    c.close()


def _leak_run(url: str, tmp: str, args) -> tuple[list[float], list[float]]:
    """Server RSS after each generation with Undo, then without (the client in a forked child)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    ready, go = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_leak_client, args=(url, tmp, args, ready, go))
    child.start()
    samples: list[float] = []
    for _ in range(2 * args.generations):
        ready.get(timeout=600)
        samples.append(_rss_mb())
        go.put(1)
    child.join(timeout=60)
    return samples[: args.generations], samples[args.generations :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--frames", type=int, default=21)
    parser.add_argument("--generations", type=int, default=30)
    parser.add_argument("--size", default="256x192")
    parser.add_argument("--leaks-only", action="store_true", help="skip the concurrent sessions (step 1)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from app_harness import running_app
    from gradio_client import Client

    scenes = ["scene: room", "scene: tabletop", "scene: terrain"]
    with tempfile.TemporaryDirectory() as tmp, running_app(Path(tmp) / "sessions", max_sessions=args.sessions + 1) as (url, built):
        base_rss = _rss_mb()
        results: dict[int, dict] = {}

        def one(i: int) -> None:
            c = Client(url, verbose=False, download_files=str(Path(tmp) / f"c{i}"))
            c.predict(scenes[i % 3], args.size, "auto", "warp", "telea", api_name="/load_sample")
            c.predict("preset", "orbit_right", 0.2, False, args.frames, api_name="/set_path")
            t0 = time.perf_counter()
            first = None
            for out in c.submit("preset", "orbit_right", 0.2, False, args.frames, api_name="/generate"):
                if first is None and str(out[0]).startswith("**Frame"):
                    first = time.perf_counter() - t0
            # the client is kept: a closed client ends its session (the page's unload)
            results[i] = {"hash": c.session_hash, "first": first, "total": time.perf_counter() - t0, "client": c}

        load: dict = {}
        if not args.leaks_only:
            load = _concurrent(args, one, results, built, base_rss)
            print(json.dumps(load), flush=True)
            for r in results.values():  # end those sessions: step 2 measures one session alone
                r["client"].close()
            time.sleep(2.0)

        # leaks: one session, N generations each taken back by Undo (same memory size every time),
        # then N without Undo (the memories grow to their bounds). The client runs in a child
        # process, so the RSS measured here is the server's alone.
        rss, grow = _leak_run(url, tmp, args)
        leak = {
            "generations": args.generations,
            "rss_after_first_mb": round(rss[0]),
            "rss_after_last_mb": round(rss[-1]),
            "growth_after_first_pct": round(100.0 * (rss[-1] - rss[0]) / rss[0], 1),
            "without_undo_rss_first_last_mb": [round(grow[0]), round(grow[-1])],
        }
        print(json.dumps({**load, **leak}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
