"""Splat files: the INRIA 3D Gaussian splatting binary ``.ply`` and antimatter15's 32-byte ``.splat``.

* ``.ply`` (binary little-endian, one ``vertex`` element): ``x y z``, ``f_dc_0..2`` (degree-0 SH),
  ``opacity`` (a logit), ``scale_0..2`` (natural logs), ``rot_0..3`` (a quaternion, w x y z); degree 0, so no
  ``f_rest_*``. Read by the INRIA viewer, SuperSplat, gsplat, nerfstudio, viser's splat example.
* ``.splat`` (32 bytes per Gaussian, no header): position (3 float32), scales (3 float32, linear), RGBA (4 uint8,
  A the opacity), rotation (4 uint8, w x y z mapped from [-1, 1] to [0, 255]); ordered by Morton code of the
  position. Read by antimatter15's viewer and viser's splat example.

Both are written by gsplat's exporter (``gsplat.export_splats``, pure Python: no CUDA kernel is built),
atomically; ``.ply`` files are read back with plyfile.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from worldstereo.atomic import write_bytes_atomic
from worldstereo.splats.gaussians import Gaussians, rgb_to_sh0

__all__ = ["SPLAT_FORMATS", "read_splats", "write_splats"]

SPLAT_FORMATS = (".ply", ".splat")
_PLY_FIELDS = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
               "rot_0", "rot_1", "rot_2", "rot_3")
_SPLAT_RECORD = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
#: the most Gaussians a file may hold when read (about 1.1 GB of ``.ply``)
MAX_READ = 20_000_000


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SPLAT_FORMATS:
        raise ValueError(f"a splat file must end in {' or '.join(SPLAT_FORMATS)}, got {path.name!r}")
    return suffix[1:]


def write_splats(g: Gaussians, path: str | os.PathLike) -> Path:
    """Write ``g`` as ``path`` (``.ply`` or ``.splat``, by its suffix) atomically; returns the path.

    Raises:
        ValueError: an unknown suffix, or no Gaussians.
    """
    from gsplat import export_splats

    p = Path(path)
    fmt = _format(p)
    if len(g) == 0:
        raise ValueError("there are no splats to write")
    data = export_splats(g.means.detach().cpu().float(), g.log_scales.detach().cpu().float(),
                         g.quats.detach().cpu().float(), g.opacity_logits.detach().cpu().float(),
                         g.sh0.detach().cpu().float()[:, None, :], torch.zeros(len(g), 0, 3), format=fmt)
    write_bytes_atomic(p, data)
    return p


def _read_ply(p: Path) -> Gaussians:
    from plyfile import PlyData, PlyParseError

    try:
        ply = PlyData.read(str(p))
        v = ply["vertex"]
    except (PlyParseError, KeyError, ValueError, OSError) as exc:
        raise ValueError(f"{p}: not a splat .ply ({exc})") from None
    names = set(v.data.dtype.names or ())
    missing = [f for f in _PLY_FIELDS if f not in names]
    if missing:
        raise ValueError(f"{p}: not a Gaussian splat .ply: missing {', '.join(missing)}")
    if len(v.data) > MAX_READ:
        raise ValueError(f"{p}: {len(v.data):,} splats, more than the {MAX_READ:,} this reader takes")

    def cols(*fields: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(v[f], np.float32) for f in fields], axis=-1))

    try:
        return Gaussians(cols("x", "y", "z"), cols("scale_0", "scale_1", "scale_2"),
                         cols("rot_0", "rot_1", "rot_2", "rot_3"), cols("opacity")[:, 0],
                         cols("f_dc_0", "f_dc_1", "f_dc_2"))
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None


def _read_splat(p: Path) -> Gaussians:
    size = p.stat().st_size
    if size % _SPLAT_RECORD.itemsize:
        raise ValueError(f"{p}: not a .splat file ({size} bytes is not a multiple of 32)")
    if size // _SPLAT_RECORD.itemsize > MAX_READ:
        raise ValueError(f"{p}: more than the {MAX_READ:,} splats this reader takes")
    rec = np.fromfile(p, dtype=_SPLAT_RECORD)
    rgba = rec["rgba"].astype(np.float32) / 255.0
    opacity = np.clip(rgba[:, 3], 1e-4, 1 - 1e-4)
    quats = rec["rot"].astype(np.float32) / 255.0 * 2.0 - 1.0  # the readers' decoding (viser, antimatter15)
    try:
        return Gaussians(torch.from_numpy(rec["pos"].copy()),
                         torch.log(torch.from_numpy(rec["scale"].copy()).clamp_min(1e-12)),
                         torch.nn.functional.normalize(torch.from_numpy(quats), dim=1),
                         torch.from_numpy(np.log(opacity / (1 - opacity))),
                         rgb_to_sh0(torch.from_numpy(rgba[:, :3])))
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None


def read_splats(path: str | os.PathLike) -> Gaussians:
    """Read a ``.ply`` (INRIA fields; extra fields such as ``f_rest_*`` or normals are ignored) or ``.splat``.

    Raises:
        ValueError: an unknown suffix, a missing field, a broken file, NaN / inf values, too many splats.
    """
    p = Path(path)
    fmt = _format(p)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    return _read_ply(p) if fmt == "ply" else _read_splat(p)
