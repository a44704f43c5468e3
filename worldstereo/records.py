"""The records a frame generator hands back: :class:`FrameResult` (one frame, before the memories see
it), :class:`AttentionSummary` (what its tokens attended to in the SSM) and :class:`FrameObservation`
(what the frame tells the GGM, captured when it was generated).

Plain data below the generation context and the backends; nothing here imports a backend or the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import torch

from worldstereo.camera import CameraParameters

_Record = TypeVar("_Record")

# Where a frame's pixel came from (:attr:`FrameResult.pixel_source`, (1, H, W) uint8).
#: the memories held it: the GGM render (with its thin gaps closed) or a stored view the SSM resampled
SOURCE_MEMORY = 0
#: a learned model made it: ``vace``'s generation, LaMa's fill (new content, kept for training)
SOURCE_MODEL = 1
#: a fallback filled it: Telea's smear, the blank-view fill (approximate; masked out of a world's dataset)
SOURCE_FALLBACK = 2
#: nothing: the hole stayed empty (fill ``none``)
SOURCE_NONE = 3
SOURCE_NAMES = {SOURCE_MEMORY: "memory", SOURCE_MODEL: "model", SOURCE_FALLBACK: "fallback", SOURCE_NONE: "none"}

# Confidence of generated content (frame pixels, and the GGM points they become), by how it was made. All lie
# below the 0.5 of observed content (the SSM's default correspondence threshold: never a correspondence), and
# a GGM merge keeps the highest, so a point's confidence says how it was made (:func:`provenance_of_confidence`).
#: a learned model's pixels with depth from a depth model (``vace`` with MoGe-2)
ESTIMATED_CONFIDENCE = 0.3
#: a learned model's pixels with depth continued from the background (LaMa; ``vace`` without a depth model)
GUESSED_CONFIDENCE = 0.25
#: a fallback's fill (Telea, the blank-view fill), depth continued from the background
FALLBACK_CONFIDENCE = 0.2


def generated_confidence(source: int, depth_guessed: bool) -> float:
    """The confidence of generated content of ``source`` (``SOURCE_MODEL`` or ``SOURCE_FALLBACK``)."""
    if source == SOURCE_MODEL:
        return GUESSED_CONFIDENCE if depth_guessed else ESTIMATED_CONFIDENCE
    if source == SOURCE_FALLBACK:
        return FALLBACK_CONFIDENCE
    return 0.0


def provenance_of_confidence(confidence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel source (uint8) and depth-guessed (bool) of content with ``confidence`` (any shape): 0.5 and above
    the memories' (observed), then model with estimated depth, model with guessed depth, fallback, none (0)."""
    c = confidence.float()
    source = torch.full(c.shape, SOURCE_NONE, dtype=torch.uint8, device=c.device)
    source[c > 0] = SOURCE_FALLBACK
    source[c >= 0.5 * (FALLBACK_CONFIDENCE + GUESSED_CONFIDENCE)] = SOURCE_MODEL
    source[c >= 0.5] = SOURCE_MEMORY
    guessed = (c > 0) & (c < 0.5 * (GUESSED_CONFIDENCE + ESTIMATED_CONFIDENCE))
    return source, guessed


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
        pixel_source: (1, H, W) uint8, where each pixel came from (``SOURCE_MEMORY``, ``SOURCE_MODEL``,
            ``SOURCE_FALLBACK``, ``SOURCE_NONE``), or None (a generator that does not say: all memory).
        depth_guessed: (1, H, W) bool, True where the depth was extrapolated (continued from a hole's
            background side, or a plane), not rendered from the memories or estimated by a depth model;
            None = nowhere.
        ssm_mask: (1, H, W) bool, True where the colour came from stored views the SSM attended to (resampled),
            or None (no SSM decode).
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
    pixel_source: torch.Tensor | None = None
    depth_guessed: torch.Tensor | None = None
    ssm_mask: torch.Tensor | None = None

    def source_map(self) -> torch.Tensor:
        """(1, H, W) uint8 pixel sources (all ``SOURCE_MEMORY`` where the generator gave none)."""
        if self.pixel_source is not None:
            return self.pixel_source
        return torch.full(self.depth.shape, SOURCE_MEMORY, dtype=torch.uint8)

    def trained_mask(self) -> torch.Tensor:
        """(1, H, W) bool: pixels a trainer should learn from (the memories' and a learned model's, not a
        fallback's smear or an empty hole)."""
        src = self.source_map()
        return (src == SOURCE_MEMORY) | (src == SOURCE_MODEL)

    def supervised_depth(self) -> torch.Tensor:
        """(1, H, W) the depth with 0 where it was guessed (extrapolated): what depth supervision may use."""
        if self.depth_guessed is None:
            return self.depth
        return torch.where(self.depth_guessed, torch.zeros_like(self.depth), self.depth)


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
        layers: the frame's inspection layers (:class:`worldstereo.history.FrameLayers`) when they were made while
            it was generated and the frame itself travels without its renders (a world's trajectory), else None.
    """

    frame: FrameResult
    camera: CameraParameters
    points: torch.Tensor
    colors: torch.Tensor
    seen_ids: torch.Tensor
    evictions: int
    confidence: torch.Tensor | None = None
    layers: Any = None


@dataclass
class InputViews:
    """The real views an exploration started from, as given (what a world's dataset exports first).

    Attributes:
        images: (N, h, w, 3) uint8.
        depths: (N, 1, h, w) float32 camera z the memories were seeded with (0 = unknown).
        cameras: the N views' cameras (size ``w x h``).
        names: N file stems (``input_000`` for a photo; ``view_0000``, ... for posed views and panoramas).
    """

    images: torch.Tensor
    depths: torch.Tensor
    cameras: CameraParameters
    names: list[str]
