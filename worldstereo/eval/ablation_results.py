"""What the memory ablation runs and what it yields: configs, settings, reference paths and results.

The data model of :mod:`worldstereo.eval.ablation` (which runs it) and :mod:`worldstereo.eval.report`
(which writes it); it imports neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from worldstereo import trajectory
from worldstereo.camera import CameraParameters
from worldstereo.eval.camera_errors import CameraErrors
from worldstereo.eval.metrics import capped
from worldstereo.eval.reconstruction import ReconstructionCurve
from worldstereo.eval.visibility import DEFAULT_DEPTH_TOLERANCE

__all__ = [
    "ABLATION_CONFIGS",
    "AblationConfig",
    "ConfigResult",
    "EvalReport",
    "EvalSettings",
    "FrameRecord",
    "ReferencePath",
    "SceneResult",
    "reference_paths",
]


@dataclass(frozen=True)
class AblationConfig:
    """One arm of the ablation."""

    name: str
    use_ggm: bool
    use_ssm: bool


#: The three arms, in the order the method predicts they improve.
ABLATION_CONFIGS: tuple[AblationConfig, ...] = (
    AblationConfig("no memory", False, False),
    AblationConfig("+GGM", True, False),
    AblationConfig("+GGM+SSM", True, True),
)


@dataclass(frozen=True)
class EvalSettings:
    """Everything that fixes an evaluation run."""

    scenes: tuple[str, ...] = ("room", "terrain", "tabletop")
    """Procedural scenes (``worldstereo.scenes.list_scenes()``)."""
    width: int = 512
    """Working width (a multiple of 16)."""
    height: int = 384
    """Working height (a multiple of 16)."""
    frames_per_path: int = 21
    """Frames of each of the four reference paths (the start camera included)."""
    seed: int = 0
    """Scene seed (textures) and torch seed."""
    eloop_radius: float = 0.1
    """Eloop radii rx = ry, as a fraction of the scene depth."""
    up_angle: float = 15.0
    """Orbit-up angle (degrees)."""
    side_angle: float = 25.0
    """Orbit-right / orbit-left angle (degrees)."""
    consistency_frames: int = 7
    """Frames of each later path compared with earlier paths (evenly spaced, the start camera skipped)."""
    consistency_references: int = 4
    """Frames of each earlier path used as references (evenly spaced, the start camera skipped)."""
    depth_tolerance: float = DEFAULT_DEPTH_TOLERANCE
    """Relative depth tolerance of ground-truth visibility."""
    surface_spacing: float = 0.004
    """Mean spacing of the true-surface sample, as a fraction of the scene depth."""
    max_surface_samples: int = 3_000_000
    """Cap on the true-surface sample size."""
    tau: float = 0.01
    """Headline reconstruction threshold, as a fraction of the scene depth."""
    tau_max: float = 0.05
    """Largest threshold of the reconstruction AUC, as a fraction of the scene depth."""
    camera_errors: bool = True
    """Recover poses from the generated frames (SIFT + essential matrix)."""
    quick: bool = False
    """The reduced CI setting (informational; see :meth:`quick_settings`)."""

    @classmethod
    def quick_settings(cls) -> EvalSettings:
        """One scene (room), 8-frame paths at 256x192: the CI setting."""
        return cls(scenes=("room",), width=256, height=192, frames_per_path=8, quick=True)

    def __post_init__(self) -> None:
        from worldstereo.scenes import list_scenes

        unknown = [s for s in self.scenes if s not in list_scenes()]
        if not self.scenes or unknown:
            raise ValueError(f"scenes must name procedural scenes {list_scenes()}, got {list(self.scenes)}")
        if self.width % 16 or self.height % 16 or self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be positive multiples of 16, got {self.width}x{self.height}")
        if self.frames_per_path < 3:
            raise ValueError(f"frames_per_path must be at least 3, got {self.frames_per_path}")


@dataclass(frozen=True)
class ReferencePath:
    """One of the four reference paths: its reference name, the preset and parameters, the cameras."""

    name: str
    preset: str
    params: dict
    cameras: CameraParameters


def reference_paths(start_camera: CameraParameters, scene_depth: float, settings: EvalSettings) -> list[ReferencePath]:
    """The four reference paths (eloop, up, right, left) at scales suited to the procedural scenes.

    The official radii (0.3 / 0.4 x scene depth) leave a room; here the eloop has radii
    ``eloop_radius`` x depth and the orbits turn ``up_angle`` / ``side_angle`` degrees about the
    point at scene depth on the optical axis.
    """
    specs = [
        ("eloop", "eloop", {"rx": settings.eloop_radius, "ry": settings.eloop_radius}),
        ("up", "orbit_up", {"angle": settings.up_angle}),
        ("right", "orbit_right", {"angle": settings.side_angle}),
        ("left", "orbit_left", {"angle": settings.side_angle}),
    ]
    n = settings.frames_per_path
    return [
        ReferencePath(name, p, params, trajectory.preset(p, start_camera, n, scene_depth=scene_depth, **params))
        for name, p, params in specs
    ]


@dataclass
class FrameRecord:
    """Scores and statistics of one generated frame."""

    path: str
    frame_index: int
    frame_id: int
    psnr: float
    ssim: float
    psnr_revisited: float
    ssim_revisited: float
    revisited_fraction: float
    ggm_points: int
    ssm_entries: int
    ms: float


@dataclass
class ConfigResult:
    """One ablation arm on one scene.

    Attributes:
        config: the arm.
        frames: one record per generated frame, exploration order (the input view excluded).
        consistency_psnr: cross-path consistency (pooled over all compared pairs), dB.
        consistency_pixels: matched pixels behind it.
        reconstruction: the final GGM against the seen true surface.
        tau: headline threshold (scene units).
        camera: camera-following errors, mean over the four paths (None if not computed).
    """

    config: AblationConfig
    frames: list[FrameRecord]
    consistency_psnr: float = float("nan")
    consistency_pixels: int = 0
    reconstruction: ReconstructionCurve | None = None
    tau: float = float("nan")
    camera: CameraErrors | None = None

    def _mean(self, key: str, skip_first: bool = True) -> float:
        vals = [capped(getattr(f, key)) for f in self.frames if not (skip_first and f.frame_id == 1)]
        vals = [v for v in vals if not math.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def psnr(self) -> float:
        """Mean per-frame PSNR (capped at 60 dB), the first frame (the input camera) left out."""
        return self._mean("psnr")

    @property
    def ssim(self) -> float:
        return self._mean("ssim")

    @property
    def psnr_revisited(self) -> float:
        """Mean per-frame PSNR inside the revisited region (frames with one)."""
        return self._mean("psnr_revisited")

    @property
    def ssim_revisited(self) -> float:
        return self._mean("ssim_revisited")

    @property
    def ms_per_frame(self) -> float:
        return float(np.mean([f.ms for f in self.frames]))

    @property
    def final_points(self) -> int:
        return self.frames[-1].ggm_points if self.frames else 0


@dataclass
class SceneResult:
    """All arms on one scene, plus the oracle's own consistency and camera errors (the floor of the measures)."""

    scene: str
    scene_depth: float
    paths: list[str]
    configs: list[ConfigResult]
    oracle_consistency_psnr: float
    oracle_camera: CameraErrors | None
    surface_samples: int
    seconds: float

    def config(self, name: str) -> ConfigResult:
        for c in self.configs:
            if c.config.name == name:
                return c
        raise KeyError(name)


@dataclass
class EvalReport:
    """A whole evaluation: settings, per-scene results, where the report was written."""

    settings: EvalSettings
    scenes: list[SceneResult]
    seconds: float
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)

    def mean_over_scenes(self, config: str, metric: str) -> float:
        """Mean of a :class:`ConfigResult` attribute over scenes (NaNs ignored)."""
        vals = [_metric(s.config(config), metric) for s in self.scenes]
        vals = [v for v in vals if not math.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")

    def ordering_holds(self, metric: str) -> bool:
        """Whether no memory < +GGM < +GGM+SSM in ``metric`` (mean over scenes)."""
        vals = [self.mean_over_scenes(c.name, metric) for c in ABLATION_CONFIGS]
        return all(a < b for a, b in zip(vals, vals[1:], strict=False))


def _metric(result: ConfigResult, metric: str) -> float:
    """A named scalar of a config result (attributes, ``f1``/``precision``/``recall``/``auc``, camera errors)."""
    rec = result.reconstruction
    if metric in ("precision", "recall", "f1"):
        return getattr(rec.at(result.tau), metric) if rec is not None else float("nan")
    if metric == "auc":
        return rec.auc_f1 if rec is not None else float("nan")
    if metric in ("rot_err_deg", "trans_err_deg", "ate"):
        return getattr(result.camera, metric) if result.camera is not None else float("nan")
    return float(getattr(result, metric))
