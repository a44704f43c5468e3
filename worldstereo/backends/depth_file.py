"""A depth map supplied by the user, as a depth backend.

Accepted files (camera z per pixel, 0 = unknown):

* ``.png``: single-channel **16-bit** PNG in millimetres (the common RGB-D convention), scaled to
  metres by ``png_depth_scale`` (default 0.001);
* ``.npy``: a float or integer (H, W) array in scene units (also (1, H, W) / (H, W, 1));
* ``.exr``: an OpenEXR image in scene units (read with the ``openexr`` package): a single channel,
  a channel named Z / depth / D / Y / R, or grey RGB(A) whose colour channels are equal.

Values must be finite and non-negative with at least one positive pixel, and the map must have
the size of the image it is used with; anything else is a ``ValueError`` saying what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from worldstereo.backends.depth import DEPTH_BACKENDS, DepthEstimator, DepthResult, check_image_tensor
from worldstereo.imageio_utils import MAX_IMAGE_PIXELS

__all__ = ["DEPTH_FILE_SUFFIXES", "FileDepth", "load_depth_map"]

DEPTH_FILE_SUFFIXES = (".png", ".npy", ".exr")
# EXR channel names that hold depth, in order of preference.
_EXR_DEPTH_CHANNELS = ("Z", "depth", "Depth", "D", "Y", "R")


def load_depth_map(
    path: str | os.PathLike, png_depth_scale: float = 1e-3, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Read and validate a depth map file.

    Args:
        path: ``.png`` (16-bit), ``.npy`` or ``.exr`` file.
        png_depth_scale: scene units per PNG count (0.001: millimetres -> metres).
        max_pixels: largest accepted ``H * W``.
    Returns:
        (H, W) float32 depth in scene units, 0 = unknown.
    Raises:
        ValueError: missing or unreadable file, unsupported suffix or pixel format, too large,
            NaN/inf, negative values, or no positive value at all.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"depth file not found: {str(p)!r}")
    if not png_depth_scale > 0 or not np.isfinite(png_depth_scale):
        raise ValueError(f"png_depth_scale must be a positive number, got {png_depth_scale}")
    suffix = p.suffix.lower()
    if suffix == ".png":
        depth = _read_png(p, max_pixels).astype(np.float64) * png_depth_scale
    elif suffix == ".npy":
        depth = _read_npy(p, max_pixels)
    elif suffix == ".exr":
        depth = _read_exr(p, max_pixels)
    else:
        raise ValueError(
            f"depth file {p.name!r} has an unsupported type {suffix or '(none)'}; "
            f"use one of {', '.join(DEPTH_FILE_SUFFIXES)}"
        )
    return _validated(depth, p.name)


def _check_size(name: str, height: int, width: int, max_pixels: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"depth map {name!r} is empty ({height}x{width})")
    if height * width > max_pixels:
        raise ValueError(f"depth map {name!r} is {width}x{height}, more than the limit of {max_pixels} pixels")


def _read_png(p: Path, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            _check_size(p.name, im.height, im.width, max_pixels)
            if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise ValueError(
                    f"depth PNG {p.name!r} has pixel mode {im.mode!r}; a depth PNG must be single-channel "
                    "16-bit in millimetres (8-bit or colour PNGs cannot hold depth)"
                )
            im.load()
            arr = np.asarray(im)
    except UnidentifiedImageError as err:
        raise ValueError(f"{p.name!r} is not a PNG file Pillow can read") from err
    except (Image.DecompressionBombError, OSError, SyntaxError, EOFError) as err:
        raise ValueError(f"depth PNG {p.name!r} could not be decoded (truncated or corrupt?): {err}") from err
    if arr.ndim != 2:
        raise ValueError(f"depth PNG {p.name!r} must have one channel, got shape {arr.shape}")
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
        raise ValueError(f"depth PNG {p.name!r} holds values outside 0..65535; it must be 16-bit")
    return arr


def _read_npy(p: Path, max_pixels: int) -> np.ndarray:
    try:
        arr = np.load(p, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"depth file {p.name!r} is not a readable .npy array (pickles are refused): {err}") from err
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"depth file {p.name!r} must hold a single array")
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:-1])
    if arr.ndim != 2:
        raise ValueError(f"depth array {p.name!r} must have shape (H, W), got {arr.shape}")
    _check_size(p.name, arr.shape[0], arr.shape[1], max_pixels)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"depth array {p.name!r} must be numeric, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64)


def _read_exr(p: Path, max_pixels: int) -> np.ndarray:
    try:
        import OpenEXR
    except ImportError as err:
        raise ValueError(
            f"reading {p.name!r} needs the OpenEXR package (`pip install openexr`); "
            "or save the depth as .npy or 16-bit PNG in millimetres"
        ) from err
    try:
        with OpenEXR.File(str(p)) as exr:
            channels = {name: np.asarray(ch.pixels) for name, ch in exr.channels().items()}
    except Exception as err:  # the bindings raise RuntimeError / OSError on corrupt files
        raise ValueError(f"{p.name!r} could not be read as an OpenEXR file: {err}") from err
    if not channels:
        raise ValueError(f"EXR file {p.name!r} has no channels")
    if len(channels) == 1:
        arr = next(iter(channels.values()))
    else:
        name = next((c for c in _EXR_DEPTH_CHANNELS if c in channels), None)
        if name is None:
            raise ValueError(
                f"EXR file {p.name!r} has channels {sorted(channels)}; none is a depth channel "
                f"({', '.join(_EXR_DEPTH_CHANNELS)}) and there is not exactly one channel"
            )
        arr = channels[name]
    if arr.ndim == 3:  # packed RGB / RGBA: accept grey only
        colour = arr[..., :3]
        if not np.array_equal(colour, np.repeat(colour[..., :1], colour.shape[-1], axis=-1)):
            raise ValueError(f"EXR file {p.name!r} holds colour (RGB channels differ), not a depth map")
        arr = colour[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"EXR depth {p.name!r} must be (H, W), got shape {arr.shape}")
    _check_size(p.name, arr.shape[0], arr.shape[1], max_pixels)
    return arr.astype(np.float64)


def _validated(depth: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(depth).all():
        bad = int((~np.isfinite(depth)).sum())
        raise ValueError(f"depth map {name!r} has {bad} NaN or inf values; store unknown depth as 0")
    if (depth < 0).any():
        raise ValueError(f"depth map {name!r} has negative values (min {depth.min():.4g}); depth is camera z >= 0")
    if not (depth > 0).any():
        raise ValueError(f"depth map {name!r} is all zero (no known depth)")
    if depth.max() > np.finfo(np.float32).max:
        raise ValueError(f"depth map {name!r} has values too large for float32")
    return depth.astype(np.float32)


@DEPTH_BACKENDS.register("file", "a user-supplied depth map (.png 16-bit mm, .npy, .exr)")
class FileDepth(DepthEstimator):
    """Depth read from a file; the file is validated when this is constructed.

    Args:
        path: depth map (see :func:`load_depth_map`).
        png_depth_scale: scene units per 16-bit PNG count (default: millimetres -> metres).
    """

    name = "file"

    def __init__(self, path: str | os.PathLike, png_depth_scale: float = 1e-3) -> None:
        self.path = Path(path)
        self.depth_map = load_depth_map(self.path, png_depth_scale=png_depth_scale)  # (H, W) float32

    def estimate(self, image: torch.Tensor) -> DepthResult:
        """Return the file's depth; ``ValueError`` when its size differs from ``image``'s."""
        img = check_image_tensor(image)
        height, width = img.shape[-2:]
        dh, dw = self.depth_map.shape
        if (dh, dw) != (height, width):
            raise ValueError(
                f"depth map {self.path.name!r} is {dw}x{dh} (W x H) but the image is {width}x{height}; "
                "the depth map must have exactly the image's size"
            )
        depth = torch.from_numpy(self.depth_map.copy()).reshape(1, 1, height, width)
        return DepthResult(
            depth=depth, intrinsics=None, approximate=False, backend=self.name, message=f"depth from {self.path.name}"
        )
