"""Snapshots of a generation context: ``state.safetensors`` (tensors) + ``state.json`` (config, counters).

Version 2 (written now; version 1 is still read) is exact and compact:

* the SSM's occupied slots only (``ssm.slots``); the free slots hold the defaults of an empty bank;
* an SSM token's feature, correspondences and confidences are rebuilt on load from the keyframe it
  came from (:meth:`GenerationContext.keyframe_tokens`) where, at save time, that rebuild gives them
  back bit for bit (``"ssm_tokens": "keyframes"``); otherwise they are stored (``"stored"``);
* keyframe images hold 8-bit colour (:meth:`GenerationContext.add_keyframe`) and are stored as bytes;
* tensors of 4 KiB and more are compressed losslessly (:mod:`worldstereo.snapshot_codec`), named in
  ``state.json``'s ``encoded``.

So a default 21-frame exploration at 384x288 takes some 6-13 MB instead of 85 MB (the bank of 24,576
slots x 768 floats was written whole). Nothing is pickled. Reading is checked before and while the
files are read (:mod:`worldstereo.snapshot_checks`, :mod:`worldstereo.snapshot_codec`): sizes, JSON
fields, config bounds, tensor names, dtypes, shapes against the config, NaN/inf.
:meth:`WorldStereo.save` / :meth:`WorldStereo.load` are the public entry points; this module works on
a :class:`~worldstereo.context.GenerationContext`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from worldstereo import snapshot_checks as checks
from worldstereo.atomic import atomic_path, write_text_atomic
from worldstereo.camera import CameraParameters
from worldstereo.config import WorldStereoConfig
from worldstereo.context import GenerationContext
from worldstereo.keyframes import MemoryKeyframe
from worldstereo.limits import MAX_SNAPSHOT_BYTES
from worldstereo.snapshot_codec import CodecError, decode, encode, quantize8

SNAPSHOT_VERSION = 2
#: versions this code reads
READABLE_VERSIONS = (1, 2)
#: SSM buffers of a token rebuilt from its keyframe
TOKEN_BUFFERS = ("features", "correspondences", "confidence")


def save_snapshot(ctx: GenerationContext, directory: str | Path) -> Path:
    """Store the whole state of ``ctx`` in ``directory`` (version 2); both files are written atomically."""
    if not ctx.started:
        raise RuntimeError("nothing to save: call start() first")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, Any] = {}
    for k, v in ctx.ggm.state_dict().items():
        if isinstance(v, torch.Tensor):
            tensors[f"ggm.{k}"] = v
        else:  # module extra state (plain metadata): JSON
            extra[f"ggm.{k}"] = v
    ssm_tensors, ssm_extra, tokens = _sparse_ssm(ctx)
    tensors.update(ssm_tensors)
    extra.update(ssm_extra)
    for i, kf in enumerate(ctx.keyframes):
        tensors[f"keyframe.{i}.image"] = _colour(kf.image)
        tensors[f"keyframe.{i}.depth"] = kf.depth
        tensors[f"keyframe.{i}.confidence"] = kf.confidence
        tensors[f"keyframe.{i}.K"] = kf.camera.K
        tensors[f"keyframe.{i}.E"] = kf.camera.w2c
    prev_image, prev_depth, prev_cam = ctx.previous  # type: ignore[misc]
    tensors["previous.image"], tensors["previous.depth"] = _colour(prev_image), prev_depth
    tensors["previous.K"], tensors["previous.E"] = prev_cam.K, prev_cam.w2c
    tensors["start.image"] = _colour(ctx.start_image)
    tensors["start.K"], tensors["start.E"] = ctx.start_camera.K, ctx.start_camera.w2c
    for i, cams in enumerate(ctx.paths):
        tensors[f"path.{i}.K"], tensors[f"path.{i}.E"] = cams.K, cams.w2c
    # safetensors refuses views sharing storage (camera slices of one path): store copies, on the host
    stored: dict[str, torch.Tensor] = {}
    encoded: dict[str, dict[str, Any]] = {}
    for name, t in tensors.items():
        t = t.detach().to("cpu", copy=True).contiguous()
        packed = encode(t)
        if packed is None:
            stored[name] = t
        else:
            stored[name], encoded[name] = packed
    meta = {
        "version": SNAPSHOT_VERSION,
        "config": asdict(ctx.config),
        "frame_counter": ctx.frame_counter,
        "path_counter": ctx.path_counter,
        "scene_depth": ctx.scene_depth,
        "merge_threshold": ctx.merge_threshold,
        "keyframes": [{"frame_id": k.frame_id, "path_index": k.path_index, "label": k.label} for k in ctx.keyframes],
        "num_paths": len(ctx.paths),
        "extra_state": extra,
        "ssm_tokens": tokens,
        "encoded": encoded,
    }
    with atomic_path(out / "state.safetensors") as tmp:
        save_file(stored, str(tmp))
    write_text_atomic(out / "state.json", json.dumps(meta, indent=1))
    return out


#: bytes per stored SSM slot beside its token buffers (order, steps, attention mass, frame, camera, size, box, index)
_SLOT_BYTES = 8 + 8 + 8 + 4 + 8 + 1 + 64 + 36 + 16 + 16 + 8
#: bytes per GGM point (position, colour, observer, count, last seen, confidence)
_POINT_BYTES = 12 + 12 + 12 + 8 + 8 + 4


def snapshot_bytes_bound(config: WorldStereoConfig, keyframes: int, paths: int = 200, path_frames: int = 49) -> int:
    """The most bytes a version-2 snapshot of ``config`` can take when its SSM tokens are rebuilt from its keyframes
    (as they are for every snapshot this project writes): the GGM full, ``keyframes`` keyframes with 8-bit colour,
    every SSM slot occupied, ``paths`` paths of ``path_frames`` cameras, and the headers. Compression only makes a
    snapshot smaller (by some 5-20x on real explorations); Zstandard's own framing of incompressible data is in the
    margin."""
    hw = config.width * config.height
    keyframe = 3 * hw + 4 * hw + 4 * hw + 4 * (9 + 16)
    images = 3 * 4 * hw + 4 * hw + 3 * hw + 4 * 2 * (9 + 16)
    cameras = paths * path_frames * 4 * (9 + 16)
    raw = (config.max_points * _POINT_BYTES + keyframes * keyframe + images + config.memory_size * _SLOT_BYTES
           + cameras)
    return int(raw * 1.01) + (1 << 20)


def _colour(image: torch.Tensor) -> torch.Tensor:
    """An image in [0, 1] as stored: bytes where it holds 8-bit colour exactly, else as it is."""
    q = quantize8(image)
    return (q * 255.0).round().to(torch.uint8) if torch.equal(q, image) else image


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values (NaN equal to NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def _slot_tokens(ctx: GenerationContext, slots: torch.Tensor, frames: torch.Tensor, boxes: torch.Tensor
                 ) -> dict[str, torch.Tensor] | None:
    """The token buffers of the SSM ``slots`` rebuilt from their keyframes (on the SSM's device), or None when a
    slot's keyframe is not stored or its box is not a token of the keyframe's grid."""
    dev = ctx.ssm.features.device
    p = ctx.patch_encoder.patch_size
    out = {name: torch.empty((slots.shape[0],) + tuple(getattr(ctx.ssm, name).shape[1:]),
                             dtype=getattr(ctx.ssm, name).dtype, device=dev) for name in TOKEN_BUFFERS}
    by_id = {k.frame_id: k for k in ctx.keyframes}
    for fid in frames.unique().tolist():
        kf = by_id.get(int(fid))
        if kf is None:
            return None
        rows, cols = ctx.patch_encoder.grid_shape(*kf.image.shape[-2:])
        sel = torch.nonzero(frames == fid).squeeze(1)
        x0, y0 = boxes[sel, 0], boxes[sel, 1]
        if not bool(torch.isfinite(x0).all() & torch.isfinite(y0).all()):
            return None
        token = (y0 / p).long() * cols + (x0 / p).long()
        if bool(((token < 0) | (token >= rows * cols)).any()):
            return None
        built = ctx.keyframe_tokens(kf)[:3]
        for name, values in zip(TOKEN_BUFFERS, built, strict=True):
            out[name][sel.to(dev)] = values.to(dev)[token.to(dev)]
    return out


def _sparse_ssm(ctx: GenerationContext) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """The SSM's occupied slots (``ssm.slots`` and each per-slot buffer's rows there), its extra state, and how its
    token buffers are kept: ``"keyframes"`` (rebuilt on load) or ``"stored"``."""
    state = ctx.ssm.state_dict()
    empty = type(ctx.ssm)(ctx.ssm.memory_size, ctx.ssm.feature_dim, ctx.ssm.num_correspondences).state_dict()
    m = ctx.ssm.memory_size
    occupied = state["occupied"]
    slots = torch.nonzero(occupied).squeeze(1)
    tensors: dict[str, torch.Tensor] = {"ssm.slots": slots}
    extra: dict[str, Any] = {}
    free = ~occupied
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            extra[f"ssm.{k}"] = v
        elif v.ndim >= 1 and v.shape[0] == m and k != "occupied":
            # a free slot that is not as an empty bank holds it is stored whole (not expected)
            tensors[f"ssm.{k}"] = v[slots] if _same(v[free], empty[k].to(v.device)[free]) else v
        elif k != "occupied":
            tensors[f"ssm.{k}"] = v
    tokens = "stored"
    rebuilt = _slot_tokens(ctx, slots, state["frame_index"][slots], state["pixel_boxes"][slots]) if slots.numel() else {}
    if rebuilt is not None and all(torch.equal(rebuilt[n], state[n][slots]) for n in rebuilt):
        tokens = "keyframes"
        for n in TOKEN_BUFFERS:
            tensors.pop(f"ssm.{n}", None)
    return tensors, extra, tokens


def read_snapshot_config(directory: str | Path) -> tuple[WorldStereoConfig, dict[str, Any]]:
    """Check a snapshot's files and JSON; returns its config and its ``state.json`` fields.

    Raises:
        ValueError (``SnapshotError``): anything wrong with the files, in one line.
    """
    d = Path(directory)
    checks.check_snapshot_files(d)
    meta = checks.read_meta(d, READABLE_VERSIONS)
    checks.check_config(meta["config"])
    checks.read_header(d / "state.safetensors")
    saved = dict(meta["config"])
    if str(saved.get("device", "auto")).startswith("cuda") and not torch.cuda.is_available():
        saved["device"] = "auto"  # a snapshot moves between machines; its memories load onto this one's device
    try:
        config = WorldStereoConfig.from_dict(saved)
    except (TypeError, ValueError) as exc:
        raise checks.SnapshotError(f"state.json: bad config ({exc})") from None
    return config, meta


def _decoded(raw: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The stored tensors with encoded ones decompressed (at most ``MAX_SNAPSHOT_BYTES`` in all)."""
    encoded = meta.get("encoded", {})
    if not isinstance(encoded, dict) or set(encoded) - set(raw):
        raise checks.SnapshotError("state.json: 'encoded' names tensors the file does not hold")
    budget = MAX_SNAPSHOT_BYTES
    out = dict(raw)
    try:
        for name, info in encoded.items():
            t = decode(name, raw[name], info, budget)
            budget -= t.numel() * t.element_size()
            out[name] = t
    except CodecError as exc:
        raise checks.SnapshotError(f"state.safetensors: {exc}") from None
    return out


def _images_as_float(tensors: dict[str, torch.Tensor]) -> None:
    for name, t in list(tensors.items()):
        if name.endswith(".image") and t.dtype == torch.uint8:
            tensors[name] = t.float() / 255.0


def _dense_ssm(ctx: GenerationContext, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Turn version 2's occupied rows into whole SSM buffers (free slots as an empty bank); returns the slots."""
    m = ctx.ssm.memory_size
    slots = tensors.pop("ssm.slots")
    if slots.dtype != torch.int64 or slots.ndim != 1 or (slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= m)):
        raise checks.SnapshotError(f"tensor ssm.slots must be int64 slot indices in [0, {m})")
    if slots.unique().numel() != slots.numel():
        raise checks.SnapshotError("tensor ssm.slots names a slot twice")
    empty = {k: v for k, v in ctx.ssm.state_dict().items() if isinstance(v, torch.Tensor)}
    occupied = torch.zeros(m, dtype=torch.bool)
    occupied[slots] = True
    tensors["ssm.occupied"] = occupied
    for k, default in empty.items():
        name = f"ssm.{k}"
        if k == "occupied" or default.ndim == 0 or default.shape[0] != m:
            continue
        rows = tensors.get(name)
        if rows is None or tuple(rows.shape) == tuple(default.shape):
            continue  # stored whole, or a token buffer rebuilt below
        if tuple(rows.shape) != (slots.numel(),) + tuple(default.shape[1:]) or rows.dtype != default.dtype:
            raise checks.SnapshotError(f"tensor {name} is {rows.dtype} {tuple(rows.shape)}; {slots.numel()} slots need "
                                       f"{default.dtype} {(slots.numel(),) + tuple(default.shape[1:])}")
        full = default.detach().cpu().clone()
        full[slots] = rows
        tensors[name] = full
    return slots


def restore_snapshot(ctx: GenerationContext, directory: str | Path, meta: dict[str, Any]) -> None:
    """Load the tensors of a snapshot (checked by :func:`read_snapshot_config`) into a fresh ``ctx``.

    Raises:
        ValueError (``SnapshotError``): tensors that do not match the config, in one line.
    """
    d = Path(directory)
    try:
        raw = load_file(str(d / "state.safetensors"))
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise checks.SnapshotError(f"state.safetensors: unreadable ({type(exc).__name__})") from None
    cfg = ctx.config
    tensors = _decoded(raw, meta)
    _images_as_float(tensors)
    slots = _dense_ssm(ctx, tensors) if "ssm.slots" in tensors else None
    rebuild = slots is not None and meta.get("ssm_tokens") == "keyframes"
    reference = {f"ssm.{k}": v for k, v in ctx.ssm.state_dict().items() if isinstance(v, torch.Tensor)}
    reference.update({f"ggm.{k}": v for k, v in ctx.ggm.state_dict().items() if isinstance(v, torch.Tensor)})
    if rebuild:  # checked once rebuilt
        tensors.update({f"ssm.{n}": reference[f"ssm.{n}"].detach().cpu() for n in TOKEN_BUFFERS})
    checks.check_tensors(tensors, meta, reference, cfg.width, cfg.height)

    def cam(prefix: str) -> CameraParameters:
        return CameraParameters(tensors[f"{prefix}.K"], tensors[f"{prefix}.E"], cfg.width, cfg.height)

    try:
        state: dict[str, Any] = {**tensors, **meta.get("extra_state", {})}
        ctx.keyframes = [
            MemoryKeyframe(
                m["frame_id"],
                m["path_index"],
                tensors[f"keyframe.{i}.image"],
                tensors[f"keyframe.{i}.depth"],
                tensors[f"keyframe.{i}.confidence"],
                cam(f"keyframe.{i}"),
                str(m.get("label", "")),  # snapshots before panorama starts have no labels
            )
            for i, m in enumerate(meta["keyframes"])
        ]
        ctx.ggm.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ggm.")})
        if rebuild:
            occ = slots
            built = _slot_tokens(ctx, occ, state["ssm.frame_index"][occ], state["ssm.pixel_boxes"][occ])
            if built is None:
                raise checks.SnapshotError("an SSM slot names a keyframe or token the snapshot does not hold")
            for n in TOKEN_BUFFERS:
                full = state[f"ssm.{n}"].clone()
                full[occ] = built[n].cpu()
                state[f"ssm.{n}"] = full
                if n != "features" and not bool(torch.isfinite(full).all()):
                    raise checks.SnapshotError(f"tensor ssm.{n} holds NaN or inf")
        ctx.ssm.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ssm.")})
        ctx.previous = (tensors["previous.image"], tensors["previous.depth"], cam("previous"))
        ctx.start_image, ctx.start_camera = tensors["start.image"], cam("start")
        ctx.paths = [cam(f"path.{i}") for i in range(meta["num_paths"])]
    except checks.SnapshotError:
        raise
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise checks.SnapshotError(f"the snapshot does not match its config: {str(exc).splitlines()[0][:200]}") from None
    ctx.frame_counter = meta["frame_counter"]
    ctx.path_counter = meta["path_counter"]
    ctx.scene_depth = float(meta["scene_depth"])
    ctx.merge_threshold = float(meta["merge_threshold"])
    # the inspection history starts at the loaded memories (what came before is not in a snapshot)
    ctx.history.begin(ctx.ggm, ctx.ssm, ctx.keyframes, frame_id=ctx.frame_counter - 1)
