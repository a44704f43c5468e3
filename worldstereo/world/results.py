"""A finished trajectory's observations on disk (``D/state/done/<name>.safetensors``), so that a world resumed in the
middle of a round folds what finished instead of generating it again.

The memories are saved once per round (``D/state/current``, a snapshot); while a round runs, each trajectory that
finishes leaves this file instead: what :func:`worldstereo.world.rounds.fold` needs of its frames, exactly (float
tensors as they were), and nothing else (no renders, no attention):

* every frame: its camera, new points, their colours and confidence, the ids of GGM points it saw again, the
  eviction count they belong to, whether it is a keyframe, the SSM keyframes it drew on, its inspection layers;
* keyframes and the last frame: the image, depth and confidence maps (a keyframe's go into the SSM, the last
  one's are what the next path continues from).

One safetensors file (tensors + a JSON header in its metadata), written atomically, read without pickle; a file
that does not read back as one of these raises :class:`ResultError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldstereo.atomic import atomic_path
from worldstereo.camera import CameraParameters
from worldstereo.frame_layers import FrameLayers
from worldstereo.records import FrameObservation, FrameResult
from worldstereo.world.rounds import Generated

__all__ = ["ResultError", "read_generated", "write_generated"]

FORMAT = "worldstereo-trajectory-result/1"
_MAPS = ("image", "depth", "confidence")
_LAYERS = ("render", "holes", "ssm", "fill", "output", "disagreement")


class ResultError(ValueError):
    """A trajectory result file that cannot be read back."""


def write_generated(path: str | Path, generated: Generated) -> Path:
    """Store ``generated`` (its observations as :func:`~worldstereo.world.rounds.generate_from` returns them) at
    ``path``, atomically."""
    tensors: dict[str, torch.Tensor] = {
        "cameras.K": generated.cameras.K, "cameras.E": generated.cameras.w2c}
    frames: list[dict[str, Any]] = []
    last = len(generated.observations) - 1
    for i, (obs, is_key) in enumerate(generated.observations):
        p = f"{i}."
        tensors[p + "K"], tensors[p + "E"] = obs.camera.K, obs.camera.w2c
        tensors[p + "points"], tensors[p + "colors"], tensors[p + "seen_ids"] = obs.points, obs.colors, obs.seen_ids
        if obs.confidence is not None:
            tensors[p + "point_confidence"] = obs.confidence
        maps = is_key or i == last
        if maps:
            for name in _MAPS:
                tensors[p + name] = getattr(obs.frame, name)
        layers = obs.layers if isinstance(obs.layers, FrameLayers) else None
        if layers is not None:
            for name in _LAYERS:
                value = getattr(layers, name)
                if value is not None:
                    tensors[f"{p}layers.{name}"] = torch.from_numpy(np.array(value, copy=True))  # (may be read-only: Ray)
        frames.append({"keyframe": bool(is_key), "evictions": int(obs.evictions), "maps": maps,
                       "size": [int(obs.camera.width), int(obs.camera.height)],
                       "references": [int(r) for r in obs.frame.references],
                       "layers": None if layers is None else {
                           "mean_disagreement": float(layers.mean_disagreement),
                           "present": [n for n in _LAYERS if getattr(layers, n) is not None]}})
    header = {"format": FORMAT, "size": [int(generated.cameras.width), int(generated.cameras.height)],
              "frames": frames}
    stored = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        save_file(stored, str(tmp), metadata={"header": json.dumps(header)})
    return out


def _header(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    header = json.loads(meta.get("header", "null"))
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("frames"), list):
        raise ValueError("not a trajectory result")
    return header


def read_generated(path: str | Path) -> Generated:
    """The :class:`~worldstereo.world.rounds.Generated` stored at ``path``.

    Raises:
        ResultError: the file is missing, not a result this module wrote, or incomplete.
    """
    p = Path(path)
    try:
        header = _header(p)
        t = load_file(str(p))
        w, h = header["size"]
        cameras = CameraParameters(t["cameras.K"], t["cameras.E"], int(w), int(h))
        observations = []
        for i, fr in enumerate(header["frames"]):
            q = f"{i}."
            fw, fh = fr["size"]
            camera = CameraParameters(t[q + "K"], t[q + "E"], int(fw), int(fh))
            if fr["maps"]:
                image, depth, confidence = (t[q + n] for n in _MAPS)
            else:
                image, depth, confidence = torch.zeros(3, 0, 0), torch.zeros(1, 0, 0), torch.zeros(1, 0, 0)
            nothing = torch.zeros(0)
            frame = FrameResult(image, depth, confidence, nothing, nothing, nothing,
                                references=[int(r) for r in fr["references"]])
            layers = None
            if fr["layers"] is not None:
                arrays = {n: (t[f"{q}layers.{n}"].numpy() if n in fr["layers"]["present"] else None) for n in _LAYERS}
                layers = FrameLayers(**arrays, mean_disagreement=float(fr["layers"]["mean_disagreement"]))
            obs = FrameObservation(frame, camera, t[q + "points"], t[q + "colors"], t[q + "seen_ids"],
                                   int(fr["evictions"]), t.get(q + "point_confidence"), layers)
            observations.append((obs, bool(fr["keyframe"])))
    except (OSError, SafetensorError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ResultError(f"{p}: cannot be read back as a finished trajectory ({exc})") from None
    return Generated(cameras, observations)
