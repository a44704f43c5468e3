"""Ray for worlds: embedded on this machine by default, a cluster when given an address
(:mod:`worldstereo.ray_cluster` starts or joins it).

* :func:`ray_executor`: a world's round as Ray tasks, one per trajectory. The round's starting
  memories go into the object store once; each task rebuilds the memories from them, generates its
  trajectory and returns the frames' observations; the driver folds them in plan order, so the world
  is the same for any number of workers. A worker keeps its generator between tasks
  (:mod:`worldstereo.backends.warm`), not the memories (each task's are freed when it ends).
* :func:`warm_up`: one task per worker that gets it ready (imports, generator, compiled kernels) while the
  driver starts its model.

Ray is imported only when used.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from worldstereo.camera import CameraParameters
from worldstereo.config import WorldStereoConfig
from worldstereo.context import ContextState, GenerationContext
from worldstereo.pipeline import Step
from worldstereo.ray_cluster import MAX_RETRIES, connect, gpu_options, started_here, task_threads
from worldstereo.threads import apply_threads, current_threads
from worldstereo.world.rounds import Generated, RoundBase, generate_from

__all__ = ["MAX_RETRIES", "RoundPayload", "connect", "gpu_options", "ray_executor", "task_threads", "warm_up"]


def _on_host(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


@dataclass
class RoundPayload:
    """What a trajectory task needs of the round: the config, the starting memories and the start view."""

    config: WorldStereoConfig
    state: ContextState
    num_points: int
    evictions: int
    start_camera: CameraParameters
    start_image: torch.Tensor
    scene_depth: float
    merge_threshold: float


#: the config fields :func:`worldstereo.backends.factory.make_generator` reads
GENERATOR_FIELDS = ("generator", "fill", "splat_radius", "prompt", "vace_steps", "vace_offload", "device", "scene",
                    "scene_seed")


def _warm_generator(config: WorldStereoConfig) -> Any:
    """This worker's generator for ``config``, built by its first task and kept for the next ones (the round's
    other trajectories, later rounds'); sets the task's thread budget (its CPUs, not the node's cores)."""
    from worldstereo.backends import warm
    from worldstereo.backends.factory import make_generator
    from worldstereo.threads import configure_process

    configure_process(task_threads())
    warm.enable()
    key = ("generator", json.dumps({k: getattr(config, k) for k in GENERATOR_FIELDS}, sort_keys=True, default=str))
    return warm.warm(key, lambda: make_generator(config).generator)


def _warm_up_task(config: WorldStereoConfig) -> int:
    """Make a worker ready before the round's first task reaches it: its imports, generator and compiled merge
    kernels. Returns its process id."""
    import os

    from worldstereo.memory.global_geometric import compile_merge_kernels

    _warm_generator(config)
    compile_merge_kernels()
    return os.getpid()


def warm_up(ray: Any, config: WorldStereoConfig, workers: int | None = None) -> list[Any]:
    """Start one warm-up task per worker (``workers``, or the cluster's CPUs) and return their refs: what a driver
    sends as soon as Ray is up, while it starts its own model, so that the first round finds its workers ready."""
    count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = ray.remote(_warm_up_task).options(**gpu_options(ray))
    return [task.remote(config) for _ in range(count)]


def _trajectory_task(boxed: list[Any], cameras: CameraParameters, seed: int) -> Generated:
    """One trajectory from the round's starting memories (runs in a Ray worker). ``boxed``: ``[ref]`` of the
    round's :class:`RoundPayload` in the object store (in a list, so that Ray does not fetch it for the task and the
    task can drop it as soon as the memories hold it)."""
    import ray

    from worldstereo.runtime import release_freed_memory

    torch.manual_seed(seed)
    payload: RoundPayload = ray.get(boxed[0])
    generator = _warm_generator(payload.config)
    ctx = GenerationContext(payload.config)
    ctx.start_camera, ctx.start_image = payload.start_camera, payload.start_image
    ctx.scene_depth, ctx.merge_threshold = payload.scene_depth, payload.merge_threshold
    ctx.restore(payload.state)
    base = RoundBase(None, payload.num_points, payload.evictions)  # (restored: the payload's copy can go)
    del payload
    try:
        return generate_from(ctx, generator, base, cameras)
    finally:
        # an idle worker holds its models, not the last trajectory's memories: freed, and given back to the system
        del ctx
        release_freed_memory()


#: a fetched result's slot
_DONE = object()


def ray_executor(ray: Any, workers: int | None = None, seed: int = 0) -> Callable[..., Iterator[Generated]]:
    """A world executor (see :func:`worldstereo.world.runner.build_world`) that runs a round's trajectories as Ray tasks.

    At most ``workers`` run at once (None: as many as Ray schedules); a task whose worker dies is retried.
    """
    remote = ray.remote(max_retries=MAX_RETRIES)(_trajectory_task)

    def run(ctx: GenerationContext, generator: Any, base: RoundBase, jobs: list[tuple[str, CameraParameters]],
            on_step: Callable[[str, Step], None]) -> Iterator[Generated]:
        # the object store holds host tensors; each task loads them onto its own device
        # (without the inspection history: a task's frames come back as observations, and the driver records them)
        state = replace(base.state, ggm=_on_host(base.state.ggm), ssm=_on_host(base.state.ssm), history=None)
        payload = ray.put(RoundPayload(ctx.config, state, base.num_points, base.evictions, ctx.start_camera,
                                       ctx.start_image, ctx.scene_depth, ctx.merge_threshold))
        options = gpu_options(ray)
        limit = workers or len(jobs)
        refs: list[Any] = [remote.options(**options).remote([payload], cams, seed) if i < limit else None
                           for i, (_, cams) in enumerate(jobs)]
        stop = threading.Event()

        def refill() -> None:
            """Submit the next trajectory as soon as any running one finishes (not when the driver gets to its
            result: it folds the results in plan order, and a worker must not wait for that)."""
            nxt = min(limit, len(jobs))
            while nxt < len(jobs) and not stop.is_set():
                live = [r for r in refs[:nxt] if r is not None and r is not _DONE]
                not_ready = ray.wait(live, num_returns=len(live), timeout=0, fetch_local=False)[1] if live else []
                if len(not_ready) >= limit:
                    ray.wait(not_ready, num_returns=1, timeout=0.5, fetch_local=False)
                    continue
                refs[nxt] = remote.options(**options).remote([payload], jobs[nxt][1], seed)
                nxt += 1

        feeder = threading.Thread(target=refill, name="round-feeder", daemon=True)
        # the driver only folds and writes meanwhile: one thread, so that it does not take the workers' cores
        # (an idle torch/OpenMP pool spins after every parallel region)
        driver_threads = current_threads()
        apply_threads(1)
        try:
            feeder.start()
            for i in range(len(jobs)):
                while refs[i] is None:  # (submitted by the feeder once a slot frees)
                    time.sleep(0.01)
                result = ray.get(refs[i])
                refs[i] = _DONE
                yield result
        finally:
            stop.set()
            apply_threads(driver_threads)
            feeder.join(timeout=2)
            for ref in refs:
                if ref is not None and ref is not _DONE:
                    ray.cancel(ref, force=True)

    def release() -> None:
        """End the workers of a Ray this process embedded (a cluster's are left to it)."""
        if ray.is_initialized() and embedded:
            ray.shutdown()

    embedded = started_here()
    run.release = release  # type: ignore[attr-defined]
    return run
