"""Factories that pick backends by name, with the fallbacks of the two tiers.

* :func:`make_depth_estimator` / :func:`default_depth_estimator`: MoGe-2 where it can be had, else the
  offline layout prior with the reason.
* :func:`make_generator`: ``vace`` where CUDA and its weights can be had, else ``warp`` with the reason.

This module sits above the backends it names and below the model that calls it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from worldstereo import hub
from worldstereo.backends.depth import DEPTH_BACKENDS, DepthEstimator
from worldstereo.backends.depth_moge import MoGeDepth, MoGeUnavailableError
from worldstereo.backends.depth_prior import LayoutPriorDepth
from worldstereo.backends.fill import make_filler
from worldstereo.backends.generators import FRAME_GENERATORS, FrameGenerator
from worldstereo.config import WorldStereoConfig

__all__ = ["GeneratorChoice", "default_depth_estimator", "make_depth_estimator", "make_generator"]


def default_depth_estimator(
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    progress=None,
    show_progress: bool = True,
) -> DepthEstimator:
    """``auto``: MoGe-2 when it can be had (installed, weights cached or downloaded), else the layout prior.

    Where the prior is chosen its results carry the reason (offline, download failed, package
    missing...) and the fix in their message, and ``fallback_reason`` says which.

    Args:
        weights: MoGe-2 checkpoint or repo id (see :func:`worldstereo.backends.depth_moge.resolve_moge_weights`).
        device: torch device for MoGe-2 (default: CUDA where present, else the CPU); picks the variant.
        progress: download progress callback (bytes done, total).
        show_progress: a progress bar on stderr while downloading.
    """
    try:
        return MoGeDepth(weights=weights, device=device, progress=progress, show_progress=show_progress)
    except MoGeUnavailableError as err:
        return LayoutPriorDepth(reason=str(err), fallback_reason=err.reason)


def make_depth_estimator(
    name: str,
    weights: str | None = None,
    device: str | None = None,
    *,
    progress: Any = None,
    show_progress: bool = True,
) -> Any:
    """A depth estimator by registry name; ``auto`` = MoGe-2 when it can be had (cache or Hub), else the prior.

    Args:
        weights, device: MoGe-2 weights and device (see ``WorldStereoConfig.depth_model`` / ``depth_device``).
        progress: download progress callback (bytes done, total); show_progress: a bar on stderr.
    """
    if name == "auto":
        return default_depth_estimator(weights, device, progress=progress, show_progress=show_progress)
    if name == "file":
        raise ValueError("the 'file' depth backend needs a path: pass the depth map to start(depth=...)")
    if name == "moge":
        return DEPTH_BACKENDS.create(
            "moge", weights=weights, device=device, progress=progress, show_progress=show_progress
        )
    return DEPTH_BACKENDS.create(name)


@dataclass
class GeneratorChoice:
    """The generator :func:`make_generator` made, and why.

    Attributes:
        generator: the frame generator.
        message: which generator runs, and why (a fallback's reason).
        fallback: why ``vace`` did not run (a ``WeightsUnavailableError.reason``), None when nothing fell back.
    """

    generator: FrameGenerator
    message: str
    fallback: str | None = None


def make_generator(config: WorldStereoConfig) -> GeneratorChoice:
    """The configured generator; ``auto`` and an unavailable ``vace`` fall back to ``warp`` (reason in the message)."""
    if config.generator == "oracle":
        from worldstereo.scenes import get_scene

        if config.scene is None:
            raise ValueError("generator 'oracle' needs config.scene (a procedural scene name)")
        gen = FRAME_GENERATORS.create("oracle", scene=get_scene(config.scene, seed=config.scene_seed))
        return GeneratorChoice(gen, "")
    message, fallback = "", None
    named_cpu = config.device == "cpu"
    if config.generator == "vace" or (config.generator == "auto" and torch.cuda.is_available() and not named_cpu):
        from worldstereo.backends.vace import VaceGenerator

        try:
            gen = VaceGenerator(prompt=config.prompt, num_inference_steps=config.vace_steps, offload=config.vace_offload,
                                device=config.model_device() or "auto")
            return GeneratorChoice(gen, gen.message)
        except hub.WeightsUnavailableError as err:
            message, fallback = f"warp (vace unavailable: {err})", err.reason
    warp = FRAME_GENERATORS.create("warp", splat_radius=config.splat_radius, filler=make_filler(config.fill))
    if not message:
        why = "config.device is 'cpu'" if named_cpu else "none found"
        message = "warp (training-free)" + ("" if config.generator == "warp" else f"; vace needs a CUDA GPU, {why}")
    return GeneratorChoice(warp, message, fallback)
