"""Lossless, checked compression of snapshot tensors.

A tensor of at least :data:`MIN_ENCODED_BYTES` is stored as a 1-D uint8 blob: its bytes regrouped into
byte planes (every element's first byte, then every second byte, ...: floats of smooth signals and
small integers share their high bytes, which then compress to almost nothing) and compressed with
Zstandard. ``state.json`` records, per encoded name, the dtype, shape and codec; decoding checks them
against limits *before* decompressing, reads at most the declared number of bytes, and refuses a blob
that gives fewer or more. Nothing here runs code from a file.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch

__all__ = ["CODEC", "MIN_ENCODED_BYTES", "CodecError", "decode", "encode", "quantize8"]

#: the one codec: byte planes + Zstandard
CODEC = "zstd-planes"
#: smaller tensors are stored raw (the header would cost more than it saves)
MIN_ENCODED_BYTES = 4096
#: Zstandard level: 3 compresses about as well as 19 on tensor planes, at some 200 MB/s
LEVEL = 3
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "int64": torch.int64,
    "int32": torch.int32, "int16": torch.int16, "uint8": torch.uint8, "bool": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class CodecError(ValueError):
    """An encoded tensor that cannot be decoded, and why."""


def quantize8(image: torch.Tensor) -> torch.Tensor:
    """Colours in [0, 1] rounded to the 256 levels of an 8-bit image (``k / 255``), float32."""
    return (image.clamp(0, 1) * 255.0).round().float() / 255.0


def _planes(a: np.ndarray) -> bytes:
    b = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize)
    return np.ascontiguousarray(b.T).tobytes()


def encode(t: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]] | None:
    """``(blob, info)`` for a tensor worth compressing, else None (store it raw)."""
    import zstandard

    t = t.detach().to("cpu").contiguous()
    if t.dtype not in _NAMES or t.numel() * t.element_size() < MIN_ENCODED_BYTES:
        return None
    a = t.numpy() if t.dtype != torch.bool else t.to(torch.uint8).numpy()
    blob = zstandard.ZstdCompressor(level=LEVEL).compress(_planes(a))
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8), {
        "dtype": _NAMES[t.dtype], "shape": list(t.shape), "codec": CODEC}


def check_info(name: str, info: Any, max_bytes: int) -> int:
    """Bytes a declared encoded tensor decodes to; raises :class:`CodecError` for a bad declaration."""
    if not isinstance(info, dict) or info.get("codec") != CODEC or info.get("dtype") not in _DTYPES:
        raise CodecError(f"tensor {name}: unknown encoding")
    shape = info.get("shape")
    if not isinstance(shape, list) or len(shape) > 4 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                                 for d in shape):
        raise CodecError(f"tensor {name}: bad encoded shape")
    itemsize = 1 if info["dtype"] == "bool" else torch.empty(0, dtype=_DTYPES[info["dtype"]]).element_size()
    nbytes = math.prod(shape) * itemsize
    if nbytes > max_bytes:
        raise CodecError(f"tensor {name} decodes to {nbytes / 2**20:.0f} MiB, beyond the limit of {max_bytes / 2**20:.0f} MiB")
    return nbytes


def decode(name: str, blob: torch.Tensor, info: Any, max_bytes: int) -> torch.Tensor:
    """The tensor ``encode`` gave ``blob`` and ``info`` for; at most ``max_bytes`` are decompressed."""
    import zstandard

    nbytes = check_info(name, info, max_bytes)
    if blob.dtype != torch.uint8 or blob.ndim != 1:
        raise CodecError(f"tensor {name}: an encoded tensor is stored as 1-D uint8")
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob.numpy().tobytes())) as reader:
            raw = reader.read(nbytes + 1)
    except zstandard.ZstdError:
        raise CodecError(f"tensor {name}: corrupt compressed data") from None
    if len(raw) != nbytes:
        raise CodecError(f"tensor {name}: decodes to {len(raw)} bytes, {nbytes} declared")
    dtype = _DTYPES[info["dtype"]]
    store = torch.uint8 if dtype == torch.bool else dtype
    itemsize = torch.empty(0, dtype=store).element_size()
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(itemsize, -1)
    flat = np.ascontiguousarray(planes.T).view(torch.empty(0, dtype=store).numpy().dtype).reshape(info["shape"])
    out = torch.from_numpy(flat.copy())
    return out.bool() if dtype == torch.bool else out
