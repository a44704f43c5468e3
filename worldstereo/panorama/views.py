"""Posed views for ``WorldStereo.start_views``: checked inputs, and depth for every view at one scale.

Depth, when not given: a learned estimator (MoGe-2) runs on each view and the views are brought to
one scale (:func:`~worldstereo.panorama.depth.align_view_scales`, views of one centre); the offline
fallback is the room prior of :func:`~worldstereo.panorama.depth.box_prior_depths` for every view,
flagged approximate with the prior's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from worldstereo.camera import CameraParameters
from worldstereo.inputs import to_depth_tensor, to_image_tensor
from worldstereo.panorama.depth import align_view_scales, box_prior_depths
from worldstereo.panorama.lift import co_centred

__all__ = ["MAX_VIEWS", "ViewDepths", "check_views", "estimate_view_depths"]

#: most views ``start_views`` takes at once
MAX_VIEWS = 64
#: message of the offline room prior (in the style of the photo prior's)
BOX_PRIOR_MESSAGE = "geometry is approximate: offline room prior (a box around the centre), no depth model"


def check_views(images: Any, cameras: Any, depths: Any | None) -> tuple[torch.Tensor, CameraParameters, torch.Tensor | None]:
    """Validate posed views; returns (N, 3, H, W) float images in [0, 1], N cameras of that size, (N, 1, H, W) depth or None.

    Raises:
        ValueError: fewer than 2 or more than :data:`MAX_VIEWS` views, views of different sizes, cameras
            that are not N ``CameraParameters``, depth of another size, NaN/inf or negative values.
    """
    if isinstance(images, (list, tuple)):
        views = list(images)
    else:
        arr = images if isinstance(images, torch.Tensor) else np.asarray(images)
        if arr.ndim != 4:
            raise ValueError(f"images must be (N, H, W, 3) or (N, 3, H, W), got shape {tuple(arr.shape)}")
        views = [arr[i] for i in range(arr.shape[0])]
    n = len(views)
    if n < 2:
        raise ValueError(f"start_views needs at least 2 views, got {n} (for one image use start())")
    if n > MAX_VIEWS:
        raise ValueError(f"start_views takes at most {MAX_VIEWS} views, got {n}")
    tensors = [to_image_tensor(v) for v in views]
    size = tensors[0].shape[-2:]
    for i, t in enumerate(tensors):
        if t.shape[-2:] != size:
            raise ValueError(f"view {i} is {t.shape[-1]}x{t.shape[-2]} but view 0 is {size[1]}x{size[0]}; "
                             "every view must have the same size")
    imgs = torch.cat(tensors)
    if not isinstance(cameras, CameraParameters) or len(cameras) != n:
        raise ValueError(f"cameras must be a CameraParameters with one camera per view ({n})")
    h, w = int(size[0]), int(size[1])
    cams = cameras.to(dtype=torch.float64)
    if (cams.width, cams.height) != (w, h):
        cams = cams.resized(w, h)
    d = None
    if depths is not None:
        dv = list(depths) if isinstance(depths, (list, tuple)) else [depths[i] for i in range(len(depths))]
        if len(dv) != n:
            raise ValueError(f"depths must hold one map per view ({n}), got {len(dv)}")
        d = torch.cat([to_depth_tensor(x, h, w) for x in dv])
    return imgs, cams, d


@dataclass
class ViewDepths:
    """Depth of every view at one scale, and where it came from.

    Attributes:
        depths: (N, 1, H, W) camera z, 0 = unknown.
        source: the estimator's name (``moge``, ``prior``).
        approximate: the room prior stands in (no depth model).
        message: one line about the depth.
        model: what produced it (a MoGe-2 repo id or file, ``prior``).
        fallback_reason: why MoGe-2 was not used under ``auto``, else None.
    """

    depths: torch.Tensor
    source: str
    approximate: bool
    message: str
    model: str
    fallback_reason: str | None = None


def estimate_view_depths(estimator: Any, images: torch.Tensor, cameras: CameraParameters) -> ViewDepths:
    """Depth of posed views from ``estimator`` (a :class:`~worldstereo.backends.depth.DepthEstimator`).

    The layout prior (``name == "prior"``) is replaced by the room prior shared by every view; a learned
    estimator runs per view, and views of one centre are then brought to one scale.
    """
    fallback = getattr(estimator, "fallback_reason", None)
    if getattr(estimator, "name", "") == "prior":
        reason = getattr(estimator, "reason", "")
        message = BOX_PRIOR_MESSAGE + (f" ({reason})" if reason else "")
        return ViewDepths(box_prior_depths(cameras), "prior", True, message, "prior", fallback)
    results = [estimator.estimate(images[i : i + 1]) for i in range(images.shape[0])]
    depths = torch.cat([r.depth.float() for r in results])
    model = getattr(estimator, "variant", results[0].backend)
    if co_centred(cameras):
        fit = align_view_scales(depths, cameras)
        depths = depths * torch.from_numpy(fit.scales).float().view(-1, 1, 1, 1)
        note = (f"{len(results)} views estimated and brought to one scale on {fit.samples:,} shared pixels of "
                f"{fit.pairs} view pairs ({fit.rejected:,} outliers rejected; residual {100 * fit.residual:.1f}%)")
    else:
        note = f"{len(results)} views estimated, each at its own scale (the views do not share a centre)"
    message = (results[0].message + "; " if results[0].message else "") + note
    return ViewDepths(depths, results[0].backend, any(r.approximate for r in results), message, model, fallback)
