"""MoGe-2 monocular geometry (PyPI ``dlr-moge``) as a depth backend, weights from the Hugging Face Hub.

Weights are found in this order (:func:`resolve_moge_weights`): an explicit checkpoint (a file, a
folder holding ``model.pt``, or a Hub repo id), the environment variable ``WORLDSTEREO_MOGE_WEIGHTS``,
the Hub cache, then a download through ``huggingface_hub`` (:mod:`worldstereo.hub`: progress,
``HF_ENDPOINT`` / ``HF_HOME`` / ``HF_HUB_OFFLINE`` / ``HF_TOKEN`` honoured, one download per
process, corrupt files removed). The default variant depends on the device: the small
``Ruicheng/moge-2-vits-normal`` on a CPU, ``Ruicheng/moge-2-vitl-normal`` on CUDA. Built models are
shared by every caller in the process (:func:`load_moge_model` caches them). A model object built
elsewhere (e.g. from a small config with random weights in tests) can be passed instead of weights
and runs through the same :meth:`MoGeDepth.estimate`.

MoGe-2 returns z-depth (metric, metres) with sky and invalid pixels masked out, and intrinsics
normalised by the image size with the principal point at (0.5, 0.5); they are converted here to
depth 0 = unknown and intrinsics in pixels of the input image (pixel centres at +0.5, so the
normalised centre 0.5 maps to W / 2, H / 2).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from worldstereo import hub
from worldstereo.backends.depth import DEPTH_BACKENDS, DepthEstimator, DepthResult, check_image_tensor

__all__ = [
    "MOGE_DEFAULT_REPOS",
    "MOGE_HF_REPOS",
    "MOGE_WEIGHTS_ENV",
    "MoGeDepth",
    "MoGeUnavailableError",
    "default_device",
    "default_moge_repo",
    "load_moge_model",
    "moge_intrinsics_to_pixels",
    "resolve_moge_weights",
]

#: environment variable naming a local MoGe-2 checkpoint (``model.pt``) or a folder holding one
MOGE_WEIGHTS_ENV = "WORLDSTEREO_MOGE_WEIGHTS"
#: default MoGe-2 variant per device type (small on a CPU, large on a GPU)
MOGE_DEFAULT_REPOS = {"cpu": "Ruicheng/moge-2-vits-normal", "cuda": "Ruicheng/moge-2-vitl-normal"}
#: the published MoGe-2 variants (any other repo id with a ``model.pt`` works too)
MOGE_HF_REPOS = (
    "Ruicheng/moge-2-vits-normal",
    "Ruicheng/moge-2-vitb-normal",
    "Ruicheng/moge-2-vitl-normal",
    "Ruicheng/moge-2-vitl",
)
CHECKPOINT_NAME = "model.pt"


class MoGeUnavailableError(hub.WeightsUnavailableError):
    """MoGe-2 cannot run here: the package is missing, or the weights cannot be had (see ``reason``)."""


def default_device() -> str:
    """``cuda`` where a CUDA device is present, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_moge_repo(device: str | torch.device | None = None) -> str:
    """The MoGe-2 Hub repository used by default on ``device`` (default: this machine's)."""
    kind = torch.device(device or default_device()).type
    return MOGE_DEFAULT_REPOS.get(kind, MOGE_DEFAULT_REPOS["cpu"])


def _checkpoint_in(path: Path) -> Path | None:
    """``path`` itself if it is a file, ``path/model.pt`` if it is a folder holding one, else None."""
    if path.is_file():
        return path
    if path.is_dir() and (path / CHECKPOINT_NAME).is_file():
        return path / CHECKPOINT_NAME
    return None


def _is_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and not Path(text).exists()


def _fetch_repo(repo_id: str, download: bool, progress: hub.ProgressCallback | None, show_progress: bool) -> Path:
    try:
        return hub.fetch_file(
            repo_id, CHECKPOINT_NAME, validate=hub.check_zip_archive, progress=progress,
            show_progress=show_progress, download=download,
        )
    except hub.WeightsUnavailableError as err:
        raise MoGeUnavailableError(f"MoGe-2 weights unavailable: {err}", err.reason) from err


def resolve_moge_weights(
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    *,
    download: bool = True,
    progress: hub.ProgressCallback | None = None,
    show_progress: bool = True,
) -> Path:
    """Find (or fetch) a MoGe-2 checkpoint.

    Order: ``weights`` (a checkpoint file, a folder holding ``model.pt``, or a Hub repo id: cache,
    then download); else ``WORLDSTEREO_MOGE_WEIGHTS``; else the default variant for ``device``
    (:func:`default_moge_repo`) from the Hub cache, then downloaded.

    Args:
        weights: explicit checkpoint path or repo id; when given, no other source is tried.
        device: picks the default variant (default: this machine's device).
        download: False = never touch the network (cache only).
        progress: download progress callback (bytes done, total).
        show_progress: a progress bar on stderr while downloading.
    Returns:
        path of an existing checkpoint file.
    Raises:
        MoGeUnavailableError: nothing found or fetched; ``reason`` and the message say why and how to fix it.
    """
    if weights is not None:
        text = str(weights)
        found = _checkpoint_in(Path(text).expanduser())
        if found is not None:
            return found
        if _is_repo_id(text):
            return _fetch_repo(text, download, progress, show_progress)
        raise MoGeUnavailableError(
            f"MoGe-2 weights not found: {text!r} is neither a checkpoint file, a folder holding {CHECKPOINT_NAME}, "
            "nor a Hugging Face repo id", "not_found",
        )
    env = os.environ.get(MOGE_WEIGHTS_ENV, "").strip()
    if env:
        found = _checkpoint_in(Path(env).expanduser())
        if found is None:
            raise MoGeUnavailableError(
                f"MoGe-2 weights not found: {MOGE_WEIGHTS_ENV}={env!r} does not exist; fix the variable or unset it "
                "to use the Hugging Face Hub", "not_found",
            )
        return found
    return _fetch_repo(default_moge_repo(device), download, progress, show_progress)


def _moge_v2_class() -> type:
    try:
        from moge.model.v2 import MoGeModel
    except ImportError as err:
        raise MoGeUnavailableError(
            f"the MoGe-2 package is not importable ({err}); install it with "
            "`pip install --no-deps -r requirements-moge.txt`", "package_missing",
        ) from err
    return MoGeModel


_models: dict[tuple[str, str], torch.nn.Module] = {}
_model_locks: dict[tuple[str, str], threading.Lock] = {}
_model_locks_guard = threading.Lock()


def load_moge_model(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build MoGe-2 from a local checkpoint ``{"model_config": ..., "model": state_dict}``, once per process.

    The file is read with ``torch.load(weights_only=True)`` (no pickled code runs). Models are cached
    by (file, device): every session of the app shares one (inference does not change it).

    Raises:
        ValueError: the file is not a MoGe-2 checkpoint.
        MoGeUnavailableError: ``dlr-moge`` is not installed.
    """
    model_cls = _moge_v2_class()
    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(f"checkpoint {path.name!r} is not a file")
    key = (str(path.resolve()), str(torch.device(device)))
    with _model_locks_guard:
        lock = _model_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _models:
            _models[key] = _build_moge(model_cls, path).to(device).eval()
        return _models[key]


def _build_moge(model_cls: type, path: Path) -> torch.nn.Module:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, zip errors, unsafe globals
        raise ValueError(f"checkpoint {path.name!r} could not be read as a torch file: {err}") from err
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"checkpoint {path.name!r} is not a MoGe checkpoint (needs 'model_config' and 'model')")
    try:
        model = model_cls(**ckpt["model_config"])
    except TypeError as err:
        raise ValueError(f"checkpoint {path.name!r} has a model_config MoGe-2 does not accept: {err}") from err
    missing, _unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing:
        raise ValueError(f"checkpoint {path.name!r} lacks {len(missing)} MoGe-2 weights, e.g. {missing[:3]}")
    return model


def moge_intrinsics_to_pixels(intrinsics: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """MoGe's normalised intrinsics (x / W, y / H, centre 0.5) -> pixel intrinsics of a W x H image.

    Args:
        intrinsics: (..., 3, 3) normalised intrinsics.
    Returns:
        (..., 3, 3) float32 pixel intrinsics: row 0 scaled by W, row 1 by H.
    """
    K = intrinsics.detach().float().clone()
    K[..., 0, :] *= width
    K[..., 1, :] *= height
    return K


@DEPTH_BACKENDS.register("moge", "MoGe-2 monocular geometry (weights from the Hugging Face Hub, cached)")
class MoGeDepth(DepthEstimator):
    """MoGe-2 depth and intrinsics from one image.

    Args:
        weights: checkpoint file, folder or Hub repo id (see :func:`resolve_moge_weights`); default:
            ``WORLDSTEREO_MOGE_WEIGHTS``, else the variant for ``device``. Ignored when ``model`` is given.
        model: an already built MoGe-2 ``MoGeModel`` (e.g. a small random-weight one in tests).
        device: torch device to run on (default: CUDA where present, else the CPU).
        resolution_level: 0..9, MoGe's trade of tokens (detail) against speed; ignored if ``num_tokens``.
        num_tokens: explicit number of ViT tokens (overrides ``resolution_level``).
        use_fp16: half-precision autocast; default: only on CUDA.
        download: False = use cached weights only (no network request).
        progress: download progress callback (bytes done, total).
        show_progress: a progress bar on stderr while downloading.
    Raises:
        MoGeUnavailableError: the package or the weights are missing (callers fall back to the prior).
    """

    name = "moge"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        model: Any = None,
        device: str | torch.device | None = None,
        resolution_level: int = 9,
        num_tokens: int | None = None,
        use_fp16: bool | None = None,
        download: bool = True,
        progress: hub.ProgressCallback | None = None,
        show_progress: bool = True,
    ) -> None:
        if not 0 <= int(resolution_level) <= 9:
            raise ValueError(f"resolution_level must be in 0..9, got {resolution_level}")
        if num_tokens is not None and int(num_tokens) <= 0:
            raise ValueError(f"num_tokens must be positive, got {num_tokens}")
        self.device = torch.device(device or default_device())
        if model is None:
            self.checkpoint: Path | None = resolve_moge_weights(
                weights, self.device, download=download, progress=progress, show_progress=show_progress
            )
            model = _load_checked(self.checkpoint, self.device)
        else:
            if not callable(getattr(model, "infer", None)):
                raise ValueError(f"model must be a MoGe model with an infer() method, got {type(model).__name__}")
            self.checkpoint = None
            model = model.to(self.device).eval()
        self.model = model
        self.resolution_level = int(resolution_level)
        self.num_tokens = None if num_tokens is None else int(num_tokens)
        self.use_fp16 = self.device.type == "cuda" if use_fp16 is None else bool(use_fp16)

    @property
    def variant(self) -> str:
        """What runs: the Hub repo id of the weights, a checkpoint's file name, or ``in-memory model``."""
        if self.checkpoint is None:
            return "in-memory model"
        return _repo_of_cached(self.checkpoint) or self.checkpoint.name

    def infer_raw(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """MoGe's own ``infer`` output for a (1, 3, H, W) image, with this backend's settings."""
        with warnings.catch_warnings():
            # MoGe post-processes under a float32 CPU autocast, which torch declines with a warning.
            warnings.filterwarnings("ignore", message=".*CPU autocast.*", category=UserWarning)
            warnings.filterwarnings("ignore", message="In CPU autocast.*", category=UserWarning)
            return self.model.infer(
                image.to(self.device),
                num_tokens=self.num_tokens,
                resolution_level=self.resolution_level,
                force_projection=True,
                apply_mask=True,
                use_fp16=self.use_fp16,
            )

    def estimate(self, image: torch.Tensor) -> DepthResult:
        img = check_image_tensor(image)
        height, width = img.shape[-2:]
        out = self.infer_raw(img)
        # Cloning outside inference mode gives ordinary tensors that callers may edit in place.
        depth = out["depth"].detach().float().cpu().clone().reshape(1, 1, height, width)
        depth = torch.where(torch.isfinite(depth) & (depth > 0), depth, torch.zeros_like(depth))
        if not bool((depth > 0).any()):
            raise RuntimeError("MoGe-2 found no valid geometry in the image (every pixel masked)")
        K: torch.Tensor | None = moge_intrinsics_to_pixels(out["intrinsics"].reshape(-1, 3, 3)[0].cpu(), width, height)
        source = self.variant
        message = f"MoGe-2 depth ({source})"
        if not bool(torch.isfinite(K).all()) or float(K[0, 0]) <= 0 or float(K[1, 1]) <= 0:
            K = None
            message += "; its focal-length estimate is unusable, a default field of view applies"
        unknown = float((depth == 0).float().mean())
        if unknown > 0:
            message += f"; {unknown:.0%} of pixels without depth (sky or invalid)"
        return DepthResult(depth=depth, intrinsics=K, approximate=False, backend=self.name, message=message)


    def estimate_depths(self, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
        """Depth of several frames at once: (B, 3, H, W) in [0, 1] -> (B, 1, H, W) on the host, 0 = unknown.

        One batched forward per ``batch`` frames (a clip's frames on a GPU, rather than one call each);
        no intrinsics (generated frames have the path's cameras). Each frame equals :meth:`estimate`'s
        depth up to the batched kernels' rounding.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images).__name__)}")
        height, width = images.shape[-2:]
        out = []
        for s in range(0, images.shape[0], batch):
            chunk = torch.stack([check_image_tensor(x)[0] for x in images[s : s + batch]])
            d = self.infer_raw(chunk)["depth"].detach().float().cpu().reshape(-1, 1, height, width)
            out.append(torch.where(torch.isfinite(d) & (d > 0), d, torch.zeros_like(d)))
        return torch.cat(out) if out else images.new_zeros(0, 1, height, width)


def _load_checked(checkpoint: Path, device: torch.device) -> torch.nn.Module:
    """:func:`load_moge_model`; a Hub-cached file that cannot be loaded is removed from the cache."""
    try:
        return load_moge_model(checkpoint, device)
    except ValueError as err:
        repo = _repo_of_cached(checkpoint)
        if repo is None:
            raise
        hub.discard_cached(checkpoint)
        raise MoGeUnavailableError(
            f"MoGe-2 weights unavailable: the cached copy of {repo} is unusable ({err}) and was removed; "
            "the next start downloads it again", "corrupt",
        ) from err


def _repo_of_cached(path: Path) -> str | None:
    """``owner/name`` when ``path`` lies in the Hub cache (``models--owner--name/snapshots/...``), else None."""
    for part in Path(path).parts:
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/", 1)
    return None
