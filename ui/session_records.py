"""What a browser session hands the page: frame records, stream updates, attention results, status lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ui.attention_view import PixelAttention
from ui.engine_status import EngineStatus, reason_text
from ui.plots import StatsPoint
from worldstereo.camera import CameraParameters
from worldstereo.records import AttentionSummary

__all__ = [
    "AttentionResult",
    "BusyError",
    "FrameRecord",
    "StartSummary",
    "StreamUpdate",
    "depth_status",
    "release_memory",
    "uint8_image",
]


def depth_status(info) -> str:
    """One markdown line: which depth is in use, whether it is approximate and why, and its scale."""
    if info.depth_source == "given":
        text = "Depth: *given* (exact)."
    elif info.approximate:
        why = reason_text(info.fallback_reason) if info.fallback_reason else "the layout prior was chosen"
        text = f"Depth: **approximate** (offline layout prior, because {why})."
    else:
        text = f"Depth: MoGe-2 *{info.depth_model}*."
    if info.scale_factor != 1.0:
        text += f" Scaled x{info.scale_factor:.3g} to the official camera path."
    return text


class BusyError(RuntimeError):
    """The session is generating; the request must wait for it (or cancel it)."""


@dataclass
class FrameRecord:
    """A generated frame kept for inspection: image (H, W, 3) uint8, its camera, its attention summary."""

    frame_id: int
    path_index: int
    image: np.ndarray
    camera: CameraParameters
    attention: AttentionSummary | None
    is_keyframe: bool
    file: Path


@dataclass
class StartSummary:
    """What loading an input did."""

    label: str
    message: str
    approximate: bool
    num_points: int
    has_truth: bool
    official_paths: list[str]
    engine: EngineStatus | None = None


@dataclass
class StreamUpdate:
    """One update of the generation stream (after a frame, or the final one).

    Attributes:
        frame: the frame just generated (None in the final update of a cancelled run before any frame).
        frame_files: image files of the current path's frames, in order.
        done: the path is finished (or cancelled); ``cancelled`` says which.
        status: a sentence for the page.
    """

    index: int
    num_frames: int
    frame: FrameRecord | None
    frame_files: list[str]
    history: list[StatsPoint]
    done: bool
    cancelled: bool
    status: str


@dataclass
class AttentionResult:
    """The attention maps of one clicked pixel or 3D point (see ``ui.attention_view``); ``frame`` is None
    (and ``message`` says why) when a 3D click found no frame to ask."""

    frame: FrameRecord | None
    pixel: PixelAttention | None
    marked: np.ndarray
    heat_frames: list[int]
    heat: np.ndarray
    grid: tuple[int, int]
    overlays: list[tuple[np.ndarray, str]]
    message: str
    pixel_xy: tuple[float, float] = (0.0, 0.0)
    point: np.ndarray | None = None
    """(3,) the clicked 3D point (3D clicks only): where the viewport's attention lines start."""


def release_memory() -> None:
    """Hand freed heap back to the OS after a generation (glibc keeps it otherwise).

    A generation allocates and frees many large tensors; glibc's allocator keeps the freed pages,
    so a long-running server's RSS creeps up although nothing leaks (measured in one session, 16
    generations of 21 frames each taken back by Undo: 430 -> 481 MB without this, flat 362 MB with it). No-op where ``malloc_trim`` does not exist.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def uint8_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float [0, 1] -> (H, W, 3) uint8."""
    return (image.detach().cpu().permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
