"""Checks of memory snapshots before and while they are loaded (they may come from anyone).

A snapshot is a folder with ``state.json`` (metadata and config) and ``state.safetensors``
(tensors; safetensors never runs code). Before a byte of tensor data is read, the file sizes, the
JSON's fields and types, the config's bounds (a config decides what the model allocates) and the
safetensors header (names, dtypes, shapes, offsets) are checked; after reading, shapes against the
config and finiteness. Every failure is one ``ValueError`` saying what is wrong, without server paths.

:func:`extract_snapshot_zip` unpacks an uploaded snapshot archive (as the app exports it) safely.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from worldstereo.limits import MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_JSON_BYTES, MAX_SNAPSHOT_PATHS

SNAPSHOT_FILES = ("state.json", "state.safetensors")
#: config fields that size allocations, and their upper bounds
CONFIG_BOUNDS = {
    "width": 4096,
    "height": 4096,
    "memory_size": 1 << 18,
    "max_points": 10_000_000,
    "ssm_feature_dim": 4096,
    "num_correspondences": 1024,
    "point_cloud_dim": 1024,
    "ggm_feature_dim": 1024,
    "num_neighbors": 256,
    "keyframes_per_clip": 1000,
    "max_reference_views": 256,
    "max_undo": 64,
    "patch_size": 256,
    "attention_window": 255,
    "vace_steps": 1000,
}
_DTYPES = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_NAME = re.compile(r"^(ggm\.[A-Za-z0-9_.]+|ssm\.[A-Za-z0-9_.]+|keyframe\.\d+\.(image|depth|confidence|K|E)|"
                   r"previous\.(image|depth|K|E)|start\.(image|K|E)|path\.\d+\.(K|E))$")
_MAX_HEADER = 100 * 2**20


class SnapshotError(ValueError):
    """A snapshot that cannot be loaded, and why."""


def check_snapshot_files(directory: Path) -> None:
    """Both files present, regular, and within the size limits."""
    if not directory.is_dir():
        raise SnapshotError("not a snapshot folder")
    for name, limit in zip(SNAPSHOT_FILES, (MAX_SNAPSHOT_JSON_BYTES, MAX_SNAPSHOT_BYTES), strict=True):
        f = directory / name
        if not f.is_file() or f.is_symlink():
            raise SnapshotError(f"no {name} (not a WorldStereo snapshot)")
        size = f.stat().st_size
        if size > limit:
            raise SnapshotError(f"{name} is {size / 2**20:.1f} MiB, more than the limit of {limit / 2**20:.0f} MiB")


def read_meta(directory: Path, versions: tuple[int, ...]) -> dict[str, Any]:
    """``state.json`` parsed and its fields type-checked (its version one of ``versions``)."""
    try:
        meta = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"state.json: broken JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise SnapshotError("state.json: top level must be an object")
    if meta.get("version") not in versions or isinstance(meta.get("version"), bool):
        raise SnapshotError(f"state.json: unsupported snapshot version {meta.get('version')!r}")
    for key in ("frame_counter", "path_counter", "num_paths"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise SnapshotError(f"state.json: {key} must be a non-negative integer, got {v!r}")
    if meta["num_paths"] > MAX_SNAPSHOT_PATHS:
        raise SnapshotError(f"state.json: {meta['num_paths']} paths, more than the limit of {MAX_SNAPSHOT_PATHS}")
    for key in ("scene_depth", "merge_threshold"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise SnapshotError(f"state.json: {key} must be a positive finite number, got {v!r}")
    kfs = meta.get("keyframes")
    if not isinstance(kfs, list) or not all(
        isinstance(k, dict) and all(isinstance(k.get(f), int) and not isinstance(k.get(f), bool) for f in ("frame_id", "path_index"))
        for k in kfs
    ):
        raise SnapshotError("state.json: keyframes must be a list of {frame_id, path_index} integers")
    if not all(isinstance(k.get("label", ""), str) and len(k.get("label", "")) <= 200 for k in kfs):
        raise SnapshotError("state.json: a keyframe label must be a string of at most 200 characters")
    if not isinstance(meta.get("config"), dict):
        raise SnapshotError("state.json: config must be an object")
    if not isinstance(meta.get("extra_state", {}), dict):
        raise SnapshotError("state.json: extra_state must be an object")
    return meta


def check_config(config: dict[str, Any]) -> None:
    """Bounds of the fields that size allocations (before a model is built from them)."""
    for key, bound in CONFIG_BOUNDS.items():
        if key not in config:
            continue
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= bound:
            raise SnapshotError(f"config {key} must be an integer in [1, {bound}], got {v!r}")
    per_entry = config.get("ssm_feature_dim", 768) + 4 * config.get("num_correspondences", 64) + 64
    if 4 * per_entry * config.get("memory_size", 24576) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError("config memory_size x ssm_feature_dim is beyond the snapshot size limit")


def read_header(path: Path) -> dict[str, dict[str, Any]]:
    """The safetensors header: tensor name -> {dtype, shape, data_offsets}, checked against the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SnapshotError("state.safetensors: truncated")
        n = struct.unpack("<Q", raw)[0]
        if n > min(_MAX_HEADER, size - 8):
            raise SnapshotError("state.safetensors: header size beyond the file")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise SnapshotError("state.safetensors: broken header") from None
    if not isinstance(header, dict):
        raise SnapshotError("state.safetensors: broken header")
    header.pop("__metadata__", None)
    data_size = size - 8 - n
    for name, info in header.items():
        if not _NAME.match(name):
            raise SnapshotError(f"state.safetensors: unexpected tensor {name[:80]!r}")
        if not isinstance(info, dict) or info.get("dtype") not in _DTYPES:
            raise SnapshotError(f"state.safetensors: tensor {name!r} has an unsupported dtype")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape) or len(shape) > 4:
            raise SnapshotError(f"state.safetensors: tensor {name!r} has a bad shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise SnapshotError(f"state.safetensors: tensor {name!r} has bad offsets")
        nbytes = math.prod(shape) * _DTYPES[info["dtype"]]
        if offsets[1] - offsets[0] != nbytes or offsets[0] < 0 or offsets[1] > data_size:
            raise SnapshotError(f"state.safetensors: tensor {name!r} declares {nbytes} bytes beyond its data")
    return header


def check_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any], reference: dict[str, torch.Tensor],
                  width: int, height: int) -> None:
    """Shapes and dtypes against the config (``reference``: a fresh model's memory state), and finiteness.

    Args:
        tensors: the loaded tensors. meta: the checked ``state.json``.
        reference: ``{"ssm.<name>": tensor}`` of a model built from the same config (fixed-size buffers),
            and ``{"ggm.<name>": tensor}`` (per-point buffers, any number of rows).
    """
    need = ["previous.image", "previous.depth", "previous.K", "previous.E", "start.image", "start.K", "start.E"]
    for i in range(len(meta["keyframes"])):
        need += [f"keyframe.{i}.{k}" for k in ("image", "depth", "confidence", "K", "E")]
    for i in range(meta["num_paths"]):
        need += [f"path.{i}.K", f"path.{i}.E"]
    missing = [k for k in need if k not in tensors]
    if missing:
        raise SnapshotError(f"state.safetensors: missing tensors {missing[:5]}")
    images = {"image": (3, height, width), "depth": (1, height, width), "confidence": (1, height, width)}
    for name, t in tensors.items():
        kind = name.rsplit(".", 1)[-1]
        if name.startswith(("keyframe.", "previous.", "start.")) and kind in images and tuple(t.shape) != images[kind]:
            raise SnapshotError(f"tensor {name} has shape {tuple(t.shape)}, the config's size needs {images[kind]}")
        if kind == "K" and (t.ndim != 3 or tuple(t.shape[1:]) != (3, 3)):
            raise SnapshotError(f"tensor {name} must be (N, 3, 3), got {tuple(t.shape)}")
        if kind == "E" and (t.ndim != 3 or tuple(t.shape[1:]) != (4, 4)):
            raise SnapshotError(f"tensor {name} must be (N, 4, 4), got {tuple(t.shape)}")
        if name in reference and name.startswith("ssm."):
            ref = reference[name]
            if tuple(t.shape) != tuple(ref.shape) or t.dtype != ref.dtype:
                raise SnapshotError(f"tensor {name} is {t.dtype} {tuple(t.shape)}; the config needs {ref.dtype} {tuple(ref.shape)}")
    pos = tensors.get("ggm._pos")
    if pos is not None:
        n = int(pos.shape[0])
        for name in ("ggm._rgb", "ggm._observer", "ggm._count", "ggm._last_seen", "ggm._conf", "ggm._embedding"):
            t = tensors.get(name)
            optional = name == "ggm._embedding"  # empty unless embeddings were given explicitly
            if t is not None and (t.ndim == 0 or int(t.shape[0]) != n) and not (optional and t.ndim >= 1 and t.shape[0] == 0):
                raise SnapshotError(f"tensor {name} has {tuple(t.shape)} rows for {n} points")
    for name, t in tensors.items():
        if name.startswith("ggm.") and name in reference:
            ref = reference[name]
            if t.dtype != ref.dtype or tuple(t.shape[1:]) != tuple(ref.shape[1:]) or t.ndim != ref.ndim:
                raise SnapshotError(f"tensor {name} is {t.dtype} {tuple(t.shape)}; the config needs {ref.dtype} (N, {tuple(ref.shape[1:])})")
    occupied = tensors.get("ssm.occupied")
    for name, t in tensors.items():
        if not t.is_floating_point():
            continue
        if name == "ssm.pixel_boxes" and occupied is not None:  # free slots hold NaN boxes by design
            t = t[occupied.bool()]
        if not bool(torch.isfinite(t).all()):
            raise SnapshotError(f"tensor {name} holds NaN or inf")


def extract_snapshot_zip(archive: str | Path, dest: Path) -> Path:
    """Unpack a snapshot archive (``snapshot/state.json`` + ``snapshot/state.safetensors``, or both at the top).

    Only those two names are read; members with other names, absolute paths or ``..`` are refused,
    as are declared sizes beyond the limits; bytes are copied with a running count, so a member
    that inflates past its declared size stops at the limit. Returns the folder holding both files.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise SnapshotError("the upload is not a zip archive") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        wanted: dict[str, zipfile.ZipInfo] = {}
        for m in members:
            name = m.filename
            parts = Path(name).parts
            if name.startswith(("/", "\\")) or ".." in parts or ":" in name or "\\" in name:
                raise SnapshotError(f"archive member {name[:80]!r} points outside the snapshot")
            if len(parts) > 2 or parts[-1] not in SNAPSHOT_FILES or (len(parts) == 2 and parts[0] != "snapshot"):
                raise SnapshotError(f"unexpected archive member {name[:80]!r}: a snapshot holds state.json and state.safetensors")
            if parts[-1] in wanted:
                raise SnapshotError(f"archive holds {parts[-1]} twice")
            wanted[parts[-1]] = m
        if set(wanted) != set(SNAPSHOT_FILES):
            raise SnapshotError("the archive is not a WorldStereo snapshot (it needs state.json and state.safetensors)")
        for name, limit in zip(SNAPSHOT_FILES, (MAX_SNAPSHOT_JSON_BYTES, MAX_SNAPSHOT_BYTES), strict=True):
            info = wanted[name]
            if info.file_size > limit:
                raise SnapshotError(f"{name} declares {info.file_size / 2**20:.1f} MiB, more than the limit of {limit / 2**20:.0f} MiB")
            written = 0
            with zf.open(info) as src, (dest / name).open("wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > min(limit, info.file_size):
                        raise SnapshotError(f"{name} inflates beyond its declared size")
                    out.write(chunk)
    return dest
