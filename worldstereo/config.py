"""``WorldStereoConfig``: everything that configures a WorldStereo model, and the option values it takes.

It sits below the generation context and the backends (both read it) and imports nothing above
the memories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from worldstereo.devices import check_device_name
from worldstereo.memory.global_geometric import UPDATE_FREQUENCIES

#: frame generators ``WorldStereoConfig.generator`` takes (``auto`` picks ``vace`` or ``warp``)
GENERATOR_CHOICES = ("auto", "warp", "vace", "oracle")
#: hole fills ``WorldStereoConfig.fill`` takes (``auto`` = LaMa when its weights can be had, else Telea)
FILL_CHOICES = ("auto", "lama", "telea", "none")

__all__ = ["FILL_CHOICES", "GENERATOR_CHOICES", "UPDATE_FREQUENCIES", "WorldStereoConfig"]


@dataclass
class WorldStereoConfig:
    """Everything that configures a :class:`WorldStereo` model."""

    width: int = 512
    """Working image width in pixels (a multiple of ``patch_size``)."""
    height: int = 384
    """Working image height in pixels (a multiple of ``patch_size``)."""
    device: str = "auto"
    """Torch device of the memories, their renders and masks, and the generator: ``cpu``, ``cuda``, ``cuda:N``
    or ``auto`` (CUDA where present, except on a ZeroGPU Space, where the memories stay on the CPU and
    only the models use the GPU; see :mod:`worldstereo.devices`). Host copies are made for display and files."""
    depth_backend: str = "auto"
    """Depth estimator for ``start()`` without a depth map: ``moge``, ``prior``, or ``auto`` (MoGe-2 when
    it can be had: cached, or downloaded from the Hugging Face Hub; else the offline prior, with the reason)."""
    depth_model: str | None = None
    """MoGe-2 weights: a Hub repo id, a checkpoint file or a folder; None = ``WORLDSTEREO_MOGE_WEIGHTS``,
    else the variant for the depth device (``Ruicheng/moge-2-vits-normal`` on a CPU, ``-vitl-normal`` on CUDA)."""
    depth_device: str | None = None
    """Torch device of the depth model; None = ``device`` when one is named, else CUDA where present (also on
    ZeroGPU), else the CPU."""
    generator: str = "auto"
    """Frame generator: ``warp`` (training-free, CPU), ``vace`` (Wan2.1-VACE through diffusers, CUDA GPU),
    ``oracle`` (ground truth of ``scene``), or ``auto`` (``vace`` where CUDA and its weights can be had,
    else ``warp``, with the reason in ``generator_message``)."""
    prompt: str = ""
    """Text prompt of the ``vace`` generator (the example's ``prompt.json`` caption, or the user's)."""
    vace_steps: int = 30
    """Denoising steps per ``vace`` clip."""
    vace_offload: bool = False
    """Model CPU offload for ``vace`` on small GPUs."""
    fill: str = "auto"
    """What fills the holes no memory covers in ``warp`` frames: ``lama`` (LaMa through ONNX Runtime,
    weights from the Hugging Face Hub), ``telea`` (OpenCV), ``none`` (left black, no depth), or ``auto``
    (LaMa when its weights can be had, else Telea)."""
    scene: str | None = None
    """Procedural scene name for the ``oracle`` generator."""
    scene_seed: int = 0
    """Seed of the procedural scene."""
    use_ggm: bool = True
    """Use the Global-Geometric Memory (off: frames are warped from the previous frame only)."""
    use_ssm: bool = True
    """Use the Spatial-Stereo Memory."""
    fov_y_deg: float = 60.0
    """Vertical field of view of the default camera (when neither a camera nor estimated intrinsics exist)."""
    point_cloud_dim: int = 32
    """GGM point embedding size (the API default 256 is not needed by the warp generator)."""
    ggm_feature_dim: int = 64
    """GGM output feature size."""
    num_neighbors: int = 8
    """GGM neighbours per query."""
    max_points: int = 1_000_000
    """GGM capacity; past it the points seen longest ago are evicted."""
    spatial_index: str = "kd_tree"
    """GGM neighbour search: ``kd_tree``, ``ball_tree`` or ``cuda_knn``."""
    update_frequency: str = "per_frame"
    """When generated frames enter the memories: ``per_frame``, ``per_step`` (after each path) or ``manual``."""
    merge_threshold: float | None = None
    """GGM merge distance in scene units; None = 1.5 pixel footprints at the start view's median depth."""
    filter_floaters: bool | None = None
    """Drop flying pixels on depth edges when lifting the start depth to points; None = only for depth
    estimated by a model (a given depth map is trusted as it is; the layout prior has no edges)."""
    splat_radius: int = 0
    """GGM render footprint radius in pixels."""
    patch_size: int = 16
    """SSM token size in pixels; ``3 * patch_size^2 <= ssm_feature_dim``."""
    ssm_feature_dim: int = 768
    """SSM feature size (the API default)."""
    memory_size: int = 24576
    """SSM capacity in tokens (24576 = 32 keyframes of 768 tokens at 512x384)."""
    num_correspondences: int = 64
    """3D correspondences per SSM token (an 8x8 grid inside the patch)."""
    attention_window: int = 7
    """SSM constrained-attention window in pixels."""
    correspondence_threshold: float = 0.5
    """SSM correspondences below this confidence are ignored (inpainted pixels have 0.25)."""
    update_strategy: str = "importance_based"
    """SSM replacement when full: ``fifo``, ``lru`` or ``importance_based`` (the default here: it keeps
    the input image, whose confidence is highest, longest)."""
    keyframes_per_clip: int = 8
    """Frames of each path stored in the SSM (8 of 21 in the reference method)."""
    max_reference_views: int = 8
    """Stored views a path may draw on (reference-view selection)."""
    max_undo: int = 8
    """How many paths ``undo()`` can take back."""
    history_mb: int = 256
    """Size bound of the inspection history (``model.history``, :mod:`worldstereo.history`) in MB; 0 turns it off."""

    def __post_init__(self) -> None:
        if self.generator not in GENERATOR_CHOICES:
            raise ValueError(f"generator must be one of {GENERATOR_CHOICES}, got {self.generator!r}")
        check_device_name(self.device)
        if self.fill not in FILL_CHOICES:
            raise ValueError(f"fill must be one of {FILL_CHOICES}, got {self.fill!r}")
        if self.update_frequency not in UPDATE_FREQUENCIES:
            raise ValueError(f"update_frequency must be one of {UPDATE_FREQUENCIES}, got {self.update_frequency!r}")
        for name in ("width", "height", "patch_size", "memory_size", "num_correspondences", "keyframes_per_clip"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.width % self.patch_size or self.height % self.patch_size:
            raise ValueError(f"width and height ({self.width}x{self.height}) must be multiples of patch_size {self.patch_size}")
        side = int(round(math.sqrt(self.num_correspondences)))
        if side * side != self.num_correspondences or self.patch_size % side:
            raise ValueError(
                f"num_correspondences ({self.num_correspondences}) must be a square whose side divides patch_size ({self.patch_size})"
            )

    def model_device(self) -> str | None:
        """The device named for the learned models (depth, vace): ``device`` unless ``auto`` (then None: each
        model takes CUDA where present, also on ZeroGPU inside its decorated call)."""
        return None if self.device == "auto" else self.device

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldStereoConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**data)
