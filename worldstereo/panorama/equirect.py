"""The equirectangular convention: panorama pixels <-> world directions, and checks of panorama inputs.

A standard, non-mirrored panorama (as 360-degree cameras and viewers make them): turning right in a
view moves right in the panorama. World up is +Z; the centre column looks along -X (where the bank's
view 0000 looks, its image right being +Y).

* Column ``x`` (pixel centre ``x + 0.5``) of a ``W``-wide panorama has longitude
  ``lon = (x + 0.5) / W * 360 - 180`` degrees; row ``y`` of ``H`` has latitude ``lat = 90 - (y + 0.5) / H * 180``.
* ``direction = cos(lat) * (-cos(lon), sin(lon), 0) + sin(lat) * (0, 0, 1)``.

A panorama's depth, where given, is the *range* (distance from the centre along the ray) per
pixel, 0 = unknown; views split from it get camera z (:func:`range_to_z`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "MAX_PANORAMA_WIDTH",
    "PanoramaError",
    "check_panorama_size",
    "direction_to_pixel",
    "directions",
    "is_panorama_size",
    "pixel_to_direction",
    "range_to_z",
    "working_panorama_size",
]

#: panoramas wider than this are downscaled (area filter) before anything else: 2048 x 1024 holds
#: 5.7 px per degree, more than the official bank's 832 x 480 views at 120 x 90 degrees (4.0 / 5.3)
MAX_PANORAMA_WIDTH = 2048
#: a panorama's width is twice its height, within this share (one pixel of rounding, JPEG crops)
ASPECT_TOLERANCE = 0.01


class PanoramaError(ValueError):
    """A panorama or a pano bank that cannot be used, with a message ready to print."""


def is_panorama_size(width: int, height: int) -> bool:
    """Whether ``width x height`` is 2:1 (within :data:`ASPECT_TOLERANCE`)."""
    return height > 0 and abs(width / (2.0 * height) - 1.0) <= ASPECT_TOLERANCE


def check_panorama_size(width: int, height: int, what: str = "the panorama") -> None:
    """Raise :class:`PanoramaError` unless ``width x height`` is an equirectangular 2:1 image of 64 x 32 or more."""
    if not is_panorama_size(width, height):
        raise PanoramaError(
            f"{what} is {width}x{height}, not an equirectangular 2:1 image (width = 2 x height); "
            "for an ordinary photo use --image"
        )
    if height < 32:
        raise PanoramaError(f"{what} is {width}x{height}; a panorama needs at least 64x32 pixels")


def working_panorama_size(width: int, height: int) -> tuple[int, int]:
    """The size a panorama is worked at: its own, or :data:`MAX_PANORAMA_WIDTH` wide (exactly 2:1) when larger."""
    if width <= MAX_PANORAMA_WIDTH:
        return width, height
    return MAX_PANORAMA_WIDTH, MAX_PANORAMA_WIDTH // 2


def pixel_to_direction(x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    """Continuous pixel coordinates (0 = left/top edge) -> (..., 3) unit world directions (float64)."""
    lon = np.radians(np.asarray(x, np.float64) / width * 360.0 - 180.0)
    lat = np.radians(90.0 - np.asarray(y, np.float64) / height * 180.0)
    c = np.cos(lat)
    return np.stack([-c * np.cos(lon), c * np.sin(lon), np.sin(lat)], axis=-1)


def direction_to_pixel(d: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3) world directions -> continuous pixel coordinates ``(x, y)`` (0 = left/top edge; x in [0, W))."""
    d = np.asarray(d, np.float64)
    n = np.linalg.norm(d, axis=-1).clip(1e-12)
    lat = np.arcsin(np.clip(d[..., 2] / n, -1.0, 1.0))
    lon = np.arctan2(d[..., 1], -d[..., 0])
    x = (np.degrees(lon) + 180.0) / 360.0 * width
    y = (90.0 - np.degrees(lat)) / 180.0 * height
    return np.mod(x, width), y


def directions(width: int, height: int) -> torch.Tensor:
    """(H, W, 3) float32 unit direction of every pixel centre of a ``width x height`` panorama."""
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return torch.from_numpy(pixel_to_direction(xs, ys, width, height).astype(np.float32))


def range_to_z(range_map: torch.Tensor, camera_directions: torch.Tensor) -> torch.Tensor:
    """Range along each ray -> camera z: ``z = range * cos(angle to the optical axis)``.

    Args:
        range_map: (..., H, W) ranges, 0 = unknown.
        camera_directions: (H, W, 3) ray directions in camera axes (any length).
    """
    d = camera_directions / camera_directions.norm(dim=-1, keepdim=True)
    return range_map * d[..., 2]

