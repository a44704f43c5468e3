"""Reading and writing pano banks, and telling a ``--panorama`` input apart (image, bank folder, example).

Every problem is one :class:`~worldstereo.panorama.equirect.PanoramaError` (a ``ValueError``) naming
the file, raised before anything is written. Bank depths are 16-bit PNGs of camera z in
millimetres (0 = unknown), as the project's other depth files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldstereo.atomic import write_text_atomic
from worldstereo.backends.depth_file import load_depth_map
from worldstereo.camera import ROTATION_TOLERANCE, CameraParameters
from worldstereo.exports import write_depth_png, write_image_png
from worldstereo.formats import read_json_file
from worldstereo.imageio_utils import load_image
from worldstereo.panorama.bank import view_name
from worldstereo.panorama.equirect import PanoramaError, check_panorama_size

__all__ = ["MAX_BANK_VIEWS", "PanoBank", "find_bank_folder", "read_pano_bank", "read_panorama_input", "write_pano_bank"]

#: most views a bank may hold (the official one has 27)
MAX_BANK_VIEWS = 64
#: largest cameras.json read, bytes
MAX_CAMERAS_JSON_BYTES = 1 << 20


@dataclass
class PanoBank:
    """Posed views of one centre (a pano bank) as read from a folder.

    Attributes:
        images: (N, H, W, 3) uint8.
        cameras: N cameras (float64, world-to-camera, OpenCV axes), of the images' size.
        depths: (N, H, W) float32 camera z in scene units (0 = unknown), or None.
        root: the bank folder (the one holding ``cameras.json``).
    """

    images: np.ndarray
    cameras: CameraParameters
    depths: np.ndarray | None
    root: Path

    def __len__(self) -> int:
        return int(self.images.shape[0])


def find_bank_folder(path: str | os.PathLike) -> Path | None:
    """The bank folder at ``path``: itself when it holds ``cameras.json`` and ``images/``, else its ``pano_bank/``."""
    p = Path(path)
    for cand in (p, p / "pano_bank"):
        if (cand / "cameras.json").is_file() and (cand / "images").is_dir():
            return cand
    return None


def _matrix(name: str, value: object, shape: tuple[int, int]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PanoramaError(f"{name} is not a {shape[0]}x{shape[1]} matrix of numbers") from None
    if arr.shape != shape:
        raise PanoramaError(f"{name} must be {shape[0]}x{shape[1]}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise PanoramaError(f"{name} holds NaN or inf values")
    return arr


def _read_cameras(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        data = read_json_file(path, MAX_CAMERAS_JSON_BYTES)
    except ValueError as exc:
        raise PanoramaError(str(exc)) from None
    if not isinstance(data, dict) or not data:
        raise PanoramaError(f'{path}: expected an object {{"0000": {{"intrinsic": ..., "extrinsic": ...}}, ...}}')
    out = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or "intrinsic" not in entry or "extrinsic" not in entry:
            raise PanoramaError(f"{path}: view {key!r} needs 'intrinsic' (3x3) and 'extrinsic' (4x4)")
        K = _matrix(f"{path.name} view {key} intrinsic", entry["intrinsic"], (3, 3))
        E = _matrix(f"{path.name} view {key} extrinsic", entry["extrinsic"], (4, 4))
        R = E[:3, :3]
        if np.abs(R @ R.T - np.eye(3)).max() > ROTATION_TOLERANCE or abs(np.linalg.det(R) - 1) > ROTATION_TOLERANCE:
            raise PanoramaError(f"{path.name} view {key} extrinsic: its 3x3 part is not a rotation")
        if np.abs(E[3] - [0, 0, 0, 1]).max() > 1e-6:
            raise PanoramaError(f"{path.name} view {key} extrinsic: the last row must be 0 0 0 1")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise PanoramaError(f"{path.name} view {key} intrinsic: focal lengths must be positive")
        out[str(key)] = (K, E)
    return out


def read_pano_bank(path: str | os.PathLike) -> PanoBank:
    """Read a bank folder (or a folder holding ``pano_bank/``); every check before any pixel is used.

    Raises:
        PanoramaError: no bank there, fewer than 2 or more than :data:`MAX_BANK_VIEWS` views, keys not
            ``0000``..``N-1``, a missing image or depth, images of different sizes, bad matrices.
    """
    root = find_bank_folder(path)
    if root is None:
        raise PanoramaError(f"{str(path)!r} holds no pano bank (cameras.json and images/, or pano_bank/ with them)")
    cams = _read_cameras(root / "cameras.json")
    n = len(cams)
    if n < 2:
        raise PanoramaError(f"{root}: a bank needs at least 2 views, cameras.json has {n}")
    if n > MAX_BANK_VIEWS:
        raise PanoramaError(f"{root}: {n} views; at most {MAX_BANK_VIEWS}")
    expected = [view_name(i) for i in range(n)]
    if sorted(cams) != expected:
        missing = sorted(set(expected) - set(cams))
        raise PanoramaError(f"{root / 'cameras.json'}: keys must be {expected[0]}..{expected[-1]}; "
                            f"missing {missing[:5]}" if missing else f"unexpected keys {sorted(set(cams) - set(expected))[:5]}")
    image_files = [root / "images" / f"{k}.png" for k in expected]
    absent = [f.name for f in image_files if not f.is_file()]
    if absent:
        raise PanoramaError(f"{root / 'images'}: missing {', '.join(absent[:5])}" + (" ..." if len(absent) > 5 else ""))
    depth_dir = root / "depths"
    has_depth = depth_dir.is_dir() and any(depth_dir.iterdir())
    if has_depth:
        gone = [f"{k}.png" for k in expected if not (depth_dir / f"{k}.png").is_file()]
        if gone:
            raise PanoramaError(f"{depth_dir}: missing {', '.join(gone[:5])} (give a depth for every view or none)")
    images = []
    for f in image_files:
        try:
            img = load_image(f)
        except ValueError as exc:
            raise PanoramaError(f"{f}: {exc}") from None
        if images and img.shape != images[0].shape:
            raise PanoramaError(f"{f.name} is {img.shape[1]}x{img.shape[0]} but {image_files[0].name} is "
                                f"{images[0].shape[1]}x{images[0].shape[0]}; every view must have the same size")
        images.append(img)
    h, w = images[0].shape[:2]
    depths = None
    if has_depth:
        depths = []
        for k in expected:
            try:
                d = load_depth_map(depth_dir / f"{k}.png")
            except ValueError as exc:
                raise PanoramaError(f"{depth_dir / (k + '.png')}: {exc}") from None
            if d.shape != (h, w):
                raise PanoramaError(f"depth {k}.png is {d.shape[1]}x{d.shape[0]} but the views are {w}x{h}")
            depths.append(d.astype(np.float32))
        depths = np.stack(depths)
    K = torch.from_numpy(np.stack([cams[k][0] for k in expected]))
    E = torch.from_numpy(np.stack([cams[k][1] for k in expected]))
    try:
        cameras = CameraParameters(K, E, w, h)
    except ValueError as exc:
        raise PanoramaError(f"{root / 'cameras.json'}: {exc}") from None
    return PanoBank(np.stack(images), cameras, depths, root)


def write_pano_bank(folder: str | os.PathLike, images: np.ndarray, cameras: CameraParameters,
                    depths: np.ndarray | None = None) -> Path:
    """Write a bank in the official layout (``images/NNNN.png``, ``cameras.json``, ``depths/NNNN.png``); each file atomically.

    Args:
        images: (N, H, W, 3) uint8; cameras: N cameras; depths: optional (N, H, W) camera z in scene units.
    """
    root = Path(folder)
    (root / "images").mkdir(parents=True, exist_ok=True)
    if depths is not None:
        (root / "depths").mkdir(exist_ok=True)
    K = cameras.K.detach().cpu().double().numpy()
    E = cameras.w2c.detach().cpu().double().numpy()
    entries = {}
    for i in range(len(cameras)):
        name = view_name(i)
        write_image_png(root / "images" / f"{name}.png", images[i])
        if depths is not None:
            write_depth_png(root / "depths" / f"{name}.png", depths[i])
        entries[name] = {"intrinsic": K[i].tolist(), "extrinsic": E[i].tolist()}
    write_text_atomic(root / "cameras.json", json.dumps(entries, indent=1) + "\n")
    return root


def read_panorama_input(path: str | os.PathLike) -> tuple[np.ndarray | None, PanoBank | None]:
    """A ``--panorama`` argument: an equirectangular image -> (image, None); a bank folder or an example folder
    holding ``pano_bank/`` -> (None, bank).

    Raises:
        PanoramaError: not found, not 2:1 (suggesting ``--image``), or a bad bank.
    """
    p = Path(path)
    if p.is_dir():
        return None, read_pano_bank(p)
    if not p.is_file():
        raise PanoramaError(f"panorama not found: {str(p)!r}")
    try:
        image = load_image(p)
    except ValueError as exc:
        raise PanoramaError(str(exc)) from None
    check_panorama_size(image.shape[1], image.shape[0], f"panorama {p.name!r}")
    return image, None
