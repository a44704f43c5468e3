"""Depth estimators: the interface, its result type and the registry they are found by.

A depth estimator turns the input image into a camera-z depth map (DESIGN.md: depth is camera
``z`` in scene units, 0 = unknown) and, when it can, the camera intrinsics in pixels. Backends
register themselves by name in :data:`DEPTH_BACKENDS`:

* ``moge``  (:mod:`worldstereo.backends.depth_moge`): MoGe-2, weights from the Hugging Face Hub (cached);
* ``file``  (:mod:`worldstereo.backends.depth_file`): a depth map supplied by the user;
* ``prior`` (:mod:`worldstereo.backends.depth_prior`): an offline layout prior, flagged approximate.

This module is the registry backends register into: it imports none of them.
:func:`worldstereo.backends.factory.default_depth_estimator` (``auto``) picks MoGe-2 where it can be
had (cached or downloaded), else the prior with one message saying why and how to fix it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from worldstereo.backends.registry import Registry
from worldstereo.camera import check_finite

__all__ = [
    "DEPTH_BACKENDS",
    "DepthEstimator",
    "DepthResult",
    "check_image_tensor",
]

DEPTH_BACKENDS: Registry[DepthEstimator] = Registry("depth backend")

# Slack on the [0, 1] range of input images (resampling can overshoot slightly).
_IMAGE_RANGE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class DepthResult:
    """What a depth estimator returns for one image.

    Attributes:
        depth: (1, 1, H, W) float32 camera-frame z in scene units; 0 = unknown (sky, invalid).
        intrinsics: (3, 3) float32 pixel intrinsics of the H x W image (pixel centres at +0.5), or
            ``None`` when the backend does not estimate them (the caller then assumes a default FOV).
        approximate: True when the geometry is a guess rather than a measurement (the layout prior);
            the UI must say so.
        backend: registered name of the backend that produced it.
        message: one human-readable line about the result, e.g. why it is approximate.
    """

    depth: torch.Tensor
    intrinsics: torch.Tensor | None
    approximate: bool
    backend: str
    message: str = ""

    def __post_init__(self) -> None:
        d = self.depth
        if not isinstance(d, torch.Tensor) or d.ndim != 4 or d.shape[:2] != (1, 1):
            shape = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
            raise ValueError(f"depth must be a (1, 1, H, W) tensor, got {shape}")
        if d.dtype != torch.float32:
            raise ValueError(f"depth must be float32, got {d.dtype}")
        check_finite("depth", d)
        if bool((d < 0).any()):
            raise ValueError("depth must be non-negative (0 = unknown)")
        K = self.intrinsics
        if K is not None:
            if not isinstance(K, torch.Tensor) or K.shape != (3, 3):
                shape = tuple(K.shape) if isinstance(K, torch.Tensor) else type(K).__name__
                raise ValueError(f"intrinsics must be a (3, 3) tensor or None, got {shape}")
            check_finite("intrinsics", K)
            if float(K[0, 0]) <= 0 or float(K[1, 1]) <= 0:
                raise ValueError("intrinsics must have positive focal lengths")

    @property
    def height(self) -> int:
        return int(self.depth.shape[-2])

    @property
    def width(self) -> int:
        return int(self.depth.shape[-1])

    @property
    def valid_mask(self) -> torch.Tensor:
        """(1, 1, H, W) bool, True where the depth is known (> 0)."""
        return self.depth > 0


def check_image_tensor(image: torch.Tensor) -> torch.Tensor:
    """Validate an input image and return it as (1, 3, H, W) float32.

    Args:
        image: (1, 3, H, W) or (3, H, W) float tensor with values in [0, 1].
    Raises:
        ValueError: wrong type, shape or dtype, NaN/inf, or values outside [0, 1].
    """
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[:2] != (1, 3) or image.shape[-1] < 1 or image.shape[-2] < 1:
        raise ValueError(f"image must have shape (1, 3, H, W) or (3, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a float tensor in [0, 1], got {image.dtype}")
    check_finite("image", image)
    lo, hi = float(image.min()), float(image.max())
    if lo < -_IMAGE_RANGE_TOLERANCE or hi > 1 + _IMAGE_RANGE_TOLERANCE:
        raise ValueError(f"image values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return image.float()


class DepthEstimator(abc.ABC):
    """Base class of depth backends: ``estimate(image) -> DepthResult``."""

    #: registered name, copied into ``DepthResult.backend``
    name: str = ""

    @abc.abstractmethod
    def estimate(self, image: torch.Tensor) -> DepthResult:
        """Estimate the depth of one image.

        Args:
            image: (1, 3, H, W) or (3, H, W) float in [0, 1] (see :func:`check_image_tensor`).
        Returns:
            a :class:`DepthResult` whose depth is (1, 1, H, W), the size of ``image``.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
