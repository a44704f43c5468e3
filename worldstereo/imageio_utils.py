"""Reading user images safely: one validated entry point from a file to RGB pixels.

Images enter the library here as uint8 ``(H, W, 3)`` arrays (the "edge" format of DESIGN.md) and
become float32 ``(1, 3, H, W)`` tensors in [0, 1] with :func:`image_to_tensor`.
Every failure (missing file, not an image, truncated data, absurd dimensions, unsupported pixel
format) is a ``ValueError`` that names the file and says what is wrong.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["MAX_IMAGE_PIXELS", "image_to_tensor", "load_image", "tensor_to_image"]

# Largest accepted image, in pixels (16 MP, e.g. 4096 x 4096). Checked from the header before
# any pixel is decoded, so a decompression bomb costs nothing.
MAX_IMAGE_PIXELS = 16 * 1024 * 1024


def load_image(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as RGB pixels.

    Greyscale, palette, RGBA (alpha dropped), CMYK and 16-bit greyscale images are converted to
    8-bit RGB; the EXIF orientation is applied; for animated formats the first frame is read.

    Args:
        path: image file (any format Pillow reads: PNG, JPEG, WebP, BMP, TIFF, GIF, ...).
        max_pixels: largest accepted ``width * height``.
    Returns:
        (H, W, 3) uint8 array.
    Raises:
        ValueError: the file is missing, is not an image, is truncated or corrupt, is larger than
            ``max_pixels``, or has a pixel format without a colour meaning (floating point).
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"image file not found: {str(p)!r}")
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own bomb limit and raises above twice that: both are errors here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                width, height = im.size
                if width <= 0 or height <= 0:
                    raise ValueError(f"image {p.name!r} has an empty size {width}x{height}")
                if width * height > max_pixels:
                    raise ValueError(
                        f"image {p.name!r} is {width}x{height} = {width * height} pixels, more than the "
                        f"limit of {max_pixels}; downscale it first"
                    )
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb_uint8(im, p.name)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"image {p.name!r} is too large to decode safely: {err}") from err
    except UnidentifiedImageError as err:
        raise ValueError(f"{p.name!r} is not an image file Pillow can read") from err
    except (OSError, SyntaxError, EOFError) as err:  # truncated or corrupt data
        raise ValueError(f"image {p.name!r} could not be decoded (truncated or corrupt?): {err}") from err


def _to_rgb_uint8(im: Image.Image, name: str) -> np.ndarray:
    """Convert a loaded Pillow image to (H, W, 3) uint8 RGB."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale (Pillow may open it as 32-bit "I"): rescale 0..65535 to 0..255.
        grey = np.asarray(im).astype(np.float64)
        if grey.max(initial=0) > 65535 or grey.min(initial=0) < 0:
            raise ValueError(f"image {name!r} is a 32-bit integer image, not a colour image")
        grey8 = np.round(grey / 257.0).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey8[..., None], 3, axis=-1))
    if im.mode == "F":
        raise ValueError(
            f"image {name!r} holds floating-point values (a depth map?), not colours; "
            "pass depth maps as depth, not as the image"
        )
    return np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {arr.dtype}")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_image(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> (H, W, 3) uint8 (values clipped, rounded)."""
    t = image.detach()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"image must have shape (1, 3, H, W) or (3, H, W), got {tuple(image.shape)}")
    arr = (t.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(arr)
