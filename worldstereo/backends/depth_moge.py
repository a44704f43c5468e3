"""MoGe-2 monocular geometry (PyPI ``dlr-moge``) as a depth backend.

Weights are never downloaded: they come from an explicit local checkpoint, the environment
variable ``WORLDSTEREO_MOGE_WEIGHTS``, or a copy already in the local Hugging Face cache (looked up
offline). A model object built elsewhere (e.g. from a small config with random weights in tests)
can be passed instead of weights and runs through the same :meth:`MoGeDepth.estimate`.

MoGe-2 returns z-depth (metric, metres) with sky and invalid pixels masked out, and intrinsics
normalised by the image size with the principal point at (0.5, 0.5); they are converted here to
depth 0 = unknown and intrinsics in pixels of the input image (pixel centres at +0.5, so the
normalised centre 0.5 maps to W / 2, H / 2).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from worldstereo.backends.depth import DEPTH_BACKENDS, DepthEstimator, DepthResult, check_image_tensor

__all__ = [
    "MOGE_HF_REPOS",
    "MOGE_WEIGHTS_ENV",
    "MoGeDepth",
    "MoGeUnavailableError",
    "load_moge_model",
    "moge_intrinsics_to_pixels",
    "resolve_moge_weights",
]

#: environment variable naming a local MoGe-2 checkpoint (``model.pt``) or a folder holding one
MOGE_WEIGHTS_ENV = "WORLDSTEREO_MOGE_WEIGHTS"
#: Hugging Face repositories looked up, in this order, in the local cache only
MOGE_HF_REPOS = (
    "Ruicheng/moge-2-vitl-normal",
    "Ruicheng/moge-2-vitl",
    "Ruicheng/moge-2-vitb-normal",
    "Ruicheng/moge-2-vits-normal",
)
_CHECKPOINT_NAME = "model.pt"


class MoGeUnavailableError(RuntimeError):
    """MoGe-2 cannot run here: ``dlr-moge`` is not installed or no local weights were found."""


def _missing_weights_message(detail: str) -> str:
    return (
        f"MoGe-2 weights not found ({detail}). Nothing is downloaded at run time: put a MoGe-2 "
        f"checkpoint ({_CHECKPOINT_NAME}, e.g. from the Hugging Face repo {MOGE_HF_REPOS[0]}) on disk "
        f"and pass its path, set {MOGE_WEIGHTS_ENV}=/path/to/{_CHECKPOINT_NAME}, or fetch it once into "
        f"the Hugging Face cache (huggingface-cli download {MOGE_HF_REPOS[0]} {_CHECKPOINT_NAME})."
    )


def _checkpoint_in(path: Path) -> Path | None:
    """``path`` itself if it is a file, ``path/model.pt`` if it is a folder holding one, else None."""
    if path.is_file():
        return path
    if path.is_dir() and (path / _CHECKPOINT_NAME).is_file():
        return path / _CHECKPOINT_NAME
    return None


def _cached_hf_checkpoint(repo_id: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached ``model.pt`` of ``repo_id`` in the local Hugging Face cache, offline; else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, _CHECKPOINT_NAME, cache_dir=cache_dir, repo_type="model")
    if isinstance(found, str) and Path(found).is_file():
        return Path(found)
    return None


def resolve_moge_weights(weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Find a local MoGe-2 checkpoint without touching the network.

    Order: ``weights`` (a checkpoint file, a folder holding ``model.pt``, or a Hugging Face repo id
    looked up in the local cache); else the ``WORLDSTEREO_MOGE_WEIGHTS`` environment variable; else
    the local Hugging Face cache for :data:`MOGE_HF_REPOS`.

    Args:
        weights: explicit checkpoint path or repo id; when given, no other source is tried.
        cache_dir: Hugging Face cache folder (default: the hub's own default).
    Returns:
        path of an existing checkpoint file.
    Raises:
        MoGeUnavailableError: nothing found; the message says where to put the weights.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        found = _checkpoint_in(path)
        if found is None and not path.is_absolute() and str(weights).count("/") == 1:
            found = _cached_hf_checkpoint(str(weights), cache_dir)
        if found is None:
            raise MoGeUnavailableError(_missing_weights_message(f"{str(weights)!r} is not a checkpoint"))
        return found
    env = os.environ.get(MOGE_WEIGHTS_ENV, "").strip()
    if env:
        found = _checkpoint_in(Path(env).expanduser())
        if found is None:
            raise MoGeUnavailableError(_missing_weights_message(f"{MOGE_WEIGHTS_ENV}={env!r} does not exist"))
        return found
    for repo in MOGE_HF_REPOS:
        found = _cached_hf_checkpoint(repo, cache_dir)
        if found is not None:
            return found
    raise MoGeUnavailableError(_missing_weights_message("no argument, no environment variable, nothing cached"))


def _moge_v2_class() -> type:
    try:
        from moge.model.v2 import MoGeModel
    except ImportError as err:
        raise MoGeUnavailableError(
            f"the MoGe-2 package is not importable ({err}); install it with "
            "`pip install --no-deps dlr-moge dlr-utils3d==1.3`"
        ) from err
    return MoGeModel


def load_moge_model(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build MoGe-2 from a local checkpoint ``{"model_config": ..., "model": state_dict}``.

    The file is read with ``torch.load(weights_only=True)`` (no pickled code runs).

    Raises:
        ValueError: the file is not a MoGe-2 checkpoint.
        MoGeUnavailableError: ``dlr-moge`` is not installed.
    """
    model_cls = _moge_v2_class()
    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} is not a file")
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
    return model.to(device).eval()


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


@DEPTH_BACKENDS.register("moge", "MoGe-2 monocular geometry (local weights only)")
class MoGeDepth(DepthEstimator):
    """MoGe-2 depth and intrinsics from one image.

    Args:
        weights: local checkpoint, folder or cached repo id (see :func:`resolve_moge_weights`);
            ignored when ``model`` is given.
        model: an already built MoGe-2 ``MoGeModel`` (e.g. a small random-weight one in tests).
        device: torch device to run on.
        resolution_level: 0..9, MoGe's trade of tokens (detail) against speed; ignored if ``num_tokens``.
        num_tokens: explicit number of ViT tokens (overrides ``resolution_level``).
        use_fp16: half-precision autocast; default: only on CUDA.
    Raises:
        MoGeUnavailableError: the package or the weights are missing (callers fall back to the prior).
    """

    name = "moge"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        model: Any = None,
        device: str | torch.device = "cpu",
        resolution_level: int = 9,
        num_tokens: int | None = None,
        use_fp16: bool | None = None,
    ) -> None:
        if not 0 <= int(resolution_level) <= 9:
            raise ValueError(f"resolution_level must be in 0..9, got {resolution_level}")
        if num_tokens is not None and int(num_tokens) <= 0:
            raise ValueError(f"num_tokens must be positive, got {num_tokens}")
        self.device = torch.device(device)
        if model is None:
            self.checkpoint: Path | None = resolve_moge_weights(weights)
            model = load_moge_model(self.checkpoint, self.device)
        else:
            if not callable(getattr(model, "infer", None)):
                raise ValueError(f"model must be a MoGe model with an infer() method, got {type(model).__name__}")
            self.checkpoint = None
            model = model.to(self.device).eval()
        self.model = model
        self.resolution_level = int(resolution_level)
        self.num_tokens = None if num_tokens is None else int(num_tokens)
        self.use_fp16 = self.device.type == "cuda" if use_fp16 is None else bool(use_fp16)

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
        source = self.checkpoint.name if self.checkpoint is not None else "in-memory model"
        message = f"MoGe-2 depth ({source})"
        if not bool(torch.isfinite(K).all()) or float(K[0, 0]) <= 0 or float(K[1, 1]) <= 0:
            K = None
            message += "; its focal-length estimate is unusable, a default field of view applies"
        unknown = float((depth == 0).float().mean())
        if unknown > 0:
            message += f"; {unknown:.0%} of pixels without depth (sky or invalid)"
        return DepthResult(depth=depth, intrinsics=K, approximate=False, backend=self.name, message=message)
