"""A frame's layers as the memory inspector keeps them, downscaled to :data:`LAYER_SIDE` pixels on the longer
side: the GGM render, its holes, what the SSM's views supplied, the pixel sources (what was filled), the output, and
the disagreement of the output with the render where the memory knew the pixel; and a stored keyframe's thumbnail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from worldstereo.records import FrameResult

__all__ = ["LAYER_SIDE", "FrameLayers", "KeyframeThumb", "disagreement_map", "small_image", "to_u8"]

#: longer side, in pixels, of the layers and keyframe thumbnails kept per frame
LAYER_SIDE = 128


def small_image(t: torch.Tensor, side: int, mode: str) -> torch.Tensor:
    """(C, H, W) resized so that its longer side is at most ``side``."""
    h, w = t.shape[-2:]
    scale = min(1.0, side / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return t
    x = t.unsqueeze(0).float()
    out = F.interpolate(x, size=size, mode="area") if mode == "area" else F.interpolate(x, size=size, mode="nearest")
    return out[0]


def to_u8(image: torch.Tensor) -> np.ndarray:
    """(3, h, w) float in [0, 1] -> (h, w, 3) uint8."""
    return (image.clamp(0, 1).permute(1, 2, 0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def disagreement_map(frame: FrameResult) -> tuple[torch.Tensor, float]:
    """(H, W) |output - GGM render| (mean over colour channels) where the render had a point, 0 elsewhere, and its
    mean over those pixels (nan where the render knew none)."""
    known = ~frame.ggm_hole_mask[0]
    diff = (frame.image.float() - frame.ggm_render.float()).abs().mean(0)
    diff = torch.where(known, diff, torch.zeros_like(diff))
    n = int(known.sum())
    return diff, (float(diff.sum()) / n if n else float("nan"))


@dataclass
class FrameLayers:
    """A frame's layers at :data:`LAYER_SIDE` (``h x w``): ``render`` and ``output`` (h, w, 3) uint8; ``holes`` (h, w)
    bool (the render had no point); ``ssm`` (h, w) bool (colour from the SSM's views) or None; ``fill`` (h, w) uint8
    pixel sources (:mod:`worldstereo.records`); ``disagreement`` (h, w) uint8, 255 = a difference of 1, and its mean
    over the pixels the memory knew, at full size, ``mean_disagreement`` (nan without a render)."""

    render: np.ndarray | None
    holes: np.ndarray | None
    ssm: np.ndarray | None
    fill: np.ndarray
    output: np.ndarray
    disagreement: np.ndarray | None
    mean_disagreement: float = float("nan")

    @classmethod
    def of(cls, frame: FrameResult, side: int = LAYER_SIDE) -> FrameLayers:
        has_render = frame.ggm_render.numel() > 0 and frame.ggm_hole_mask.numel() > 0
        output = to_u8(small_image(frame.image, side, "area"))
        fill = small_image(frame.source_map().float(), side, "nearest")[0].to(torch.uint8).numpy()
        render = holes = dis = None
        mean = float("nan")
        if has_render:
            render = to_u8(small_image(frame.ggm_render, side, "area"))
            holes = small_image(frame.ggm_hole_mask.float(), side, "nearest")[0].numpy() > 0.5
            d, mean = disagreement_map(frame)
            dis = (small_image(d[None], side, "area")[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
        ssm = None if frame.ssm_mask is None else small_image(frame.ssm_mask.float(), side, "nearest")[0].numpy() > 0.5
        return cls(render, holes, ssm, fill, output, dis, mean)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.render, self.holes, self.ssm, self.fill, self.output, self.disagreement)
                   if a is not None)


@dataclass(frozen=True)
class KeyframeThumb:
    """A stored keyframe as the history keeps it: ``image`` (h, w, 3) uint8 at :data:`LAYER_SIDE`, its ``label``
    (``bank view 0003``; empty for a generated frame), and its camera (``K`` (3, 3), ``w2c`` (4, 4), ``width``, ``height``)."""

    image: np.ndarray
    label: str
    K: np.ndarray
    w2c: np.ndarray
    width: int
    height: int
