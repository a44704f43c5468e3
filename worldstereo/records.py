"""The records a frame generator hands back: :class:`FrameResult` (one frame, before the memories see
it), :class:`AttentionSummary` (what its tokens attended to in the SSM) and :class:`FrameObservation`
(what the frame tells the GGM, captured when it was generated).

Plain data below the generation context and the backends; nothing here imports a backend or the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import TypeVar

import torch

from worldstereo.camera import CameraParameters

_Record = TypeVar("_Record")


def to_host(record: _Record) -> _Record:
    """A copy of a dataclass record with every tensor field (and tensors in dict fields) on the CPU.

    Generators run on the memories' device; what they hand back to the pipeline, the app and files is
    on the host (one copy per frame, of what is shown or written).
    """
    changes = {}
    for f in fields(record):
        v = getattr(record, f.name)
        if isinstance(v, torch.Tensor) and v.device.type != "cpu":
            changes[f.name] = v.cpu()
        elif isinstance(v, dict) and any(isinstance(x, torch.Tensor) and x.device.type != "cpu" for x in v.values()):
            changes[f.name] = {k: x.cpu() if isinstance(x, torch.Tensor) else x for k, x in v.items()}
    return replace(record, **changes) if changes else record


@dataclass
class AttentionSummary:
    """What each target token attended to in the Spatial-Stereo Memory (enough to draw maps).

    ``N`` target tokens on a ``grid`` of ``rows x cols`` patches of ``patch_size`` pixels, ``k`` top entries each.

    Attributes:
        grid: (rows, cols) of the target token grid.
        patch_size: token side in pixels.
        query_points: (N, 3) world point of each token (nan where the token had no depth).
        top_entries: (N, k) int64 SSM slot indices, -1 where fewer were attended.
        top_weights: (N, k) float attention weights (0 for -1 entries).
        top_frames: (N, k) int64 frame ids of those entries, -1 where none.
        top_boxes: (N, k, 4) pixel boxes ``x0, y0, x1, y1`` of the entries in their keyframes.
        top_points: (N, k, 3) mean valid correspondence of each entry (world), for lines in 3D.
        frame_weights: frame id -> (rows, cols) attention mass the tokens gave that keyframe.
    """

    grid: tuple[int, int]
    patch_size: int
    query_points: torch.Tensor
    top_entries: torch.Tensor
    top_weights: torch.Tensor
    top_frames: torch.Tensor
    top_boxes: torch.Tensor
    top_points: torch.Tensor
    frame_weights: dict[int, torch.Tensor] = field(default_factory=dict)

    def token_at(self, x: float, y: float) -> int:
        """Index of the token holding pixel coordinate ``(x, y)``."""
        rows, cols = self.grid
        c = min(max(int(x // self.patch_size), 0), cols - 1)
        r = min(max(int(y // self.patch_size), 0), rows - 1)
        return r * cols + c


@dataclass
class FrameResult:
    """One generated frame, before it is fed back into the memories.

    Attributes:
        image: (3, H, W) float32 in [0, 1].
        depth: (1, H, W) float32, > 0 wherever the generator could place a surface.
        confidence: (1, H, W) float32 in [0, 1]: 1 where the content came from memory or truth,
            lower where it was inpainted or its depth extended.
        ggm_render: (3, H, W) the Global-Geometric Memory rendered into the camera (zeros if off).
        ggm_hole_mask: (1, H, W) bool, True where the GGM render had no point.
        new_surface_mask: (1, H, W) bool, True where no memory covered the pixel (new surface).
        ggm_point_ids: (H, W) int64 index of the GGM point that won each pixel of the GGM render,
            -1 where none (or None when the GGM was not rendered). Those points were re-observed.
        references: frame ids of the SSM keyframes this frame drew on.
        attention: the SSM attention summary, or None when the SSM was not used.
        timings: stage name -> milliseconds.
        extra_points: (P, 3) world points of new surface outside the frame (a hole filler's look-ahead
            beyond the field of view), or None.
        extra_colors: (P, 3) their colours in [0, 1], or None.
    """

    image: torch.Tensor
    depth: torch.Tensor
    confidence: torch.Tensor
    ggm_render: torch.Tensor
    ggm_hole_mask: torch.Tensor
    new_surface_mask: torch.Tensor
    ggm_point_ids: torch.Tensor | None = None
    references: list[int] = field(default_factory=list)
    attention: AttentionSummary | None = None
    timings: dict[str, float] = field(default_factory=dict)
    extra_points: torch.Tensor | None = None
    extra_colors: torch.Tensor | None = None


@dataclass
class FrameObservation:
    """A generated frame and the GGM points it yields (see :meth:`GenerationContext.observe`).

    Attributes:
        frame: the generator's output.
        camera: its camera (B = 1).
        points: (P, 3) world points of new surface.
        colors: (P, 3) their colours in [0, 1].
        confidence: (P,) their confidence (the frame's: 1 observed, lower generated, e.g. inpainted).
        seen_ids: (S,) int64 indices of GGM points seen again.
        evictions: the model's GGM eviction count when ``seen_ids`` were taken (ids are valid
            only while no point has been evicted since).
    """

    frame: FrameResult
    camera: CameraParameters
    points: torch.Tensor
    colors: torch.Tensor
    seen_ids: torch.Tensor
    evictions: int
    confidence: torch.Tensor | None = None
