"""Snapshots of a generation context: ``state.safetensors`` (tensors) + ``state.json`` (config, counters).

Nothing is pickled. Reading is checked before and while the files are read
(:mod:`worldstereo.snapshot_checks`): sizes, JSON fields, config bounds, tensor names, dtypes,
shapes against the config, NaN/inf. :meth:`WorldStereo.save` / :meth:`WorldStereo.load` are the
public entry points; this module works on a :class:`~worldstereo.context.GenerationContext`.
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

SNAPSHOT_VERSION = 1


def save_snapshot(ctx: GenerationContext, directory: str | Path) -> Path:
    """Store the whole state of ``ctx`` in ``directory``; both files are written atomically."""
    if not ctx.started:
        raise RuntimeError("nothing to save: call start() first")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, Any] = {}
    for name, module in (("ggm", ctx.ggm), ("ssm", ctx.ssm)):
        for k, v in module.state_dict().items():
            if isinstance(v, torch.Tensor):
                tensors[f"{name}.{k}"] = v.contiguous()
            else:  # module extra state (plain metadata): JSON
                extra[f"{name}.{k}"] = v
    for i, kf in enumerate(ctx.keyframes):
        tensors[f"keyframe.{i}.image"] = kf.image.contiguous()
        tensors[f"keyframe.{i}.depth"] = kf.depth.contiguous()
        tensors[f"keyframe.{i}.confidence"] = kf.confidence.contiguous()
        tensors[f"keyframe.{i}.K"] = kf.camera.K.contiguous()
        tensors[f"keyframe.{i}.E"] = kf.camera.w2c.contiguous()
    prev_image, prev_depth, prev_cam = ctx.previous  # type: ignore[misc]
    tensors["previous.image"], tensors["previous.depth"] = prev_image.contiguous(), prev_depth.contiguous()
    tensors["previous.K"], tensors["previous.E"] = prev_cam.K.contiguous(), prev_cam.w2c.contiguous()
    tensors["start.image"] = ctx.start_image.contiguous()
    tensors["start.K"], tensors["start.E"] = ctx.start_camera.K.contiguous(), ctx.start_camera.w2c.contiguous()
    for i, cams in enumerate(ctx.paths):
        tensors[f"path.{i}.K"], tensors[f"path.{i}.E"] = cams.K.contiguous(), cams.w2c.contiguous()
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
    }
    # safetensors refuses views sharing storage (camera slices of one path): store copies, on the host
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    with atomic_path(out / "state.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_text_atomic(out / "state.json", json.dumps(meta, indent=1))
    return out


def read_snapshot_config(directory: str | Path) -> tuple[WorldStereoConfig, dict[str, Any]]:
    """Check a snapshot's files and JSON; returns its config and its ``state.json`` fields.

    Raises:
        ValueError (``SnapshotError``): anything wrong with the files, in one line.
    """
    d = Path(directory)
    checks.check_snapshot_files(d)
    meta = checks.read_meta(d, SNAPSHOT_VERSION)
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


def restore_snapshot(ctx: GenerationContext, directory: str | Path, meta: dict[str, Any]) -> None:
    """Load the tensors of a snapshot (checked by :func:`read_snapshot_config`) into a fresh ``ctx``.

    Raises:
        ValueError (``SnapshotError``): tensors that do not match the config, in one line.
    """
    d = Path(directory)
    try:
        tensors = load_file(str(d / "state.safetensors"))
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise checks.SnapshotError(f"state.safetensors: unreadable ({type(exc).__name__})") from None
    cfg = ctx.config
    reference = {f"ssm.{k}": v for k, v in ctx.ssm.state_dict().items() if isinstance(v, torch.Tensor)}
    reference.update({f"ggm.{k}": v for k, v in ctx.ggm.state_dict().items() if isinstance(v, torch.Tensor)})
    checks.check_tensors(tensors, meta, reference, cfg.width, cfg.height)

    def cam(prefix: str) -> CameraParameters:
        return CameraParameters(tensors[f"{prefix}.K"], tensors[f"{prefix}.E"], cfg.width, cfg.height)

    try:
        state: dict[str, Any] = {**tensors, **meta.get("extra_state", {})}
        ctx.ggm.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ggm.")})
        ctx.ssm.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ssm.")})
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
