"""Camera-following errors: do generated frames move the way the commanded cameras do?

Poses are recovered from the frames alone, two at a time: SIFT features (OpenCV), Lowe ratio
matching, an essential matrix with the known intrinsics (USAC, 0.75 px) and ``recoverPose``. For each pair
of consecutive frames this gives the relative rotation and the *direction* of the relative
translation (two views carry no scale). Against the commanded relative poses:

* ``RotErr``: mean geodesic angle (degrees) between recovered and commanded relative rotations;
* ``TransErr``: mean angle (degrees) between recovered and commanded relative translation directions;
* ``ATE``: the recovered steps are chained into a trajectory, each step given unit length (the
  reference paths move at constant speed), aligned to the commanded camera centres by a Umeyama
  Sim(3) fit (scale included), and the RMSE of the centres is reported in scene units. A pair whose
  pose could not be recovered counts as "no motion" in the chain and is left out of the means.

Conventions: OpenCV puts pixel centres at integer coordinates, the library at +0.5, so the
principal point is shifted by half a pixel before calling OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from worldstereo.camera import CameraParameters
from worldstereo.eval.reconstruction import _as_points

__all__ = [
    "CameraErrors",
    "RelativePose",
    "Sim3",
    "camera_following_errors",
    "estimate_relative_pose",
    "rotation_error_deg",
    "translation_direction_error_deg",
    "umeyama",
]

_MIN_INLIERS = 12
_RATIO = 0.75


@dataclass(frozen=True)
class Sim3:
    """A similarity ``x -> scale * rotation @ x + translation``."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N, 3)."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation


def umeyama(source, target, with_scale: bool = True) -> Sim3:
    """Least-squares similarity (Umeyama 1991) taking ``source`` (N, 3) onto ``target`` (N, 3).

    Minimises ``sum ||target_i - (s R source_i + t)||^2``; ``with_scale=False`` fixes ``s = 1`` (SE(3)).
    Needs N >= 3 points not all on one line for a unique rotation.
    """
    src, dst = _as_points("source", source), _as_points("target", target)
    if src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"source and target must be (N, 3) with the same N >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / src.shape[0]
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    var_s = (xs**2).sum() / src.shape[0]
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return Sim3(s, R, t)


def rotation_error_deg(R_est, R_ref) -> float:
    """Geodesic angle (degrees) between two rotations (3, 3)."""
    R_est, R_ref = np.asarray(R_est, dtype=np.float64), np.asarray(R_ref, dtype=np.float64)
    if R_est.shape != (3, 3) or R_ref.shape != (3, 3):
        raise ValueError(f"rotations must be (3, 3), got {R_est.shape} and {R_ref.shape}")
    c = (np.trace(R_est.T @ R_ref) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(c, -1.0, 1.0))))


def translation_direction_error_deg(t_est, t_ref) -> float:
    """Angle (degrees) between two translation directions (3,); NaN if either is zero."""
    a, b = np.asarray(t_est, dtype=np.float64).reshape(3), np.asarray(t_ref, dtype=np.float64).reshape(3)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return math.degrees(math.acos(float(np.clip(a @ b / (na * nb), -1.0, 1.0))))


@dataclass(frozen=True)
class RelativePose:
    """Pose of view B relative to view A from features: ``x_B = R x_A + t`` with ``|t| = 1``.

    Attributes:
        rotation: (3, 3).
        translation: (3,) unit direction.
        num_matches: ratio-test matches.
        num_inliers: essential-matrix inliers that passed the cheirality check.
    """

    rotation: np.ndarray
    translation: np.ndarray
    num_matches: int
    num_inliers: int


def _gray(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 3 and t.shape[0] == 3:  # (3, H, W) float
            t = (t.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        image = t.numpy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"images must be (H, W, 3) uint8 or (3, H, W) float, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)


def _opencv_K(K) -> np.ndarray:
    K = (K.detach().cpu().double().numpy() if isinstance(K, torch.Tensor) else np.asarray(K, dtype=np.float64)).copy()
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got {K.shape}")
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K


class _Features:
    """SIFT keypoints and descriptors of each frame, computed once."""

    def __init__(self) -> None:
        self.sift = cv2.SIFT_create(nfeatures=4000)
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)

    def detect(self, image) -> tuple[np.ndarray, np.ndarray | None]:
        kps, desc = self.sift.detectAndCompute(_gray(image), None)
        return np.array([k.pt for k in kps], dtype=np.float64).reshape(-1, 2), desc

    def relative_pose(self, fa, fb, K_cv: np.ndarray) -> RelativePose | None:
        (pa, da), (pb, db) = fa, fb
        if da is None or db is None or len(pa) < 2 or len(pb) < 2:
            return None
        good = [m[0] for m in self.matcher.knnMatch(da, db, k=2) if len(m) == 2 and m[0].distance < _RATIO * m[1].distance]
        if len(good) < _MIN_INLIERS:
            return None
        a = pa[[m.queryIdx for m in good]]
        b = pb[[m.trainIdx for m in good]]
        cv2.setRNGSeed(0)  # deterministic robust fit
        E, inl = cv2.findEssentialMat(a, b, K_cv, method=cv2.USAC_ACCURATE, prob=0.999, threshold=0.75)
        if E is None or E.shape != (3, 3):
            return None
        n, R, t, inl2 = cv2.recoverPose(E, a, b, K_cv, mask=inl)
        if n < _MIN_INLIERS:
            return None
        t = t.reshape(3)
        return RelativePose(R, t / np.linalg.norm(t), len(good), int(n))


def estimate_relative_pose(image_a, image_b, K) -> RelativePose | None:
    """Relative pose of view B w.r.t. view A from SIFT matches (None when it cannot be recovered).

    Args:
        image_a, image_b: (H, W, 3) uint8 or (3, H, W) float images.
        K: (3, 3) pixel intrinsics in the library convention (pixel centres at +0.5), shared by both.
    """
    feats = _Features()
    return feats.relative_pose(feats.detect(image_a), feats.detect(image_b), _opencv_K(K))


@dataclass(frozen=True)
class CameraErrors:
    """Camera-following errors of one frame sequence (see the module docstring).

    Attributes:
        rot_err_deg: mean relative-rotation error over recovered pairs (degrees).
        trans_err_deg: mean relative-translation direction error over recovered pairs (degrees).
        ate: RMSE of camera centres after Sim(3) alignment (scene units); NaN with < 3 frames.
        num_pairs: consecutive pairs evaluated.
        num_failed: pairs whose pose could not be recovered.
    """

    rot_err_deg: float
    trans_err_deg: float
    ate: float
    num_pairs: int
    num_failed: int

    @staticmethod
    def mean(errors: list[CameraErrors]) -> CameraErrors:
        """Means of the per-sequence errors (NaNs ignored); pair counts summed."""

        def m(vals: list[float]) -> float:
            vals = [v for v in vals if not math.isnan(v)]
            return float(np.mean(vals)) if vals else float("nan")

        return CameraErrors(
            m([e.rot_err_deg for e in errors]),
            m([e.trans_err_deg for e in errors]),
            m([e.ate for e in errors]),
            sum(e.num_pairs for e in errors),
            sum(e.num_failed for e in errors),
        )


def camera_following_errors(images, cameras: CameraParameters) -> CameraErrors:
    """Errors of the camera motion recovered from ``images`` against the commanded ``cameras``.

    Args:
        images: T frames, each (H, W, 3) uint8 or (3, H, W) float (a list, or a (T, ...) array/tensor).
        cameras: the T commanded cameras (world-to-camera), whose intrinsics the frames were made with.
    Returns:
        :class:`CameraErrors`.
    """
    if not isinstance(cameras, CameraParameters):
        raise ValueError(f"cameras must be CameraParameters, got {type(cameras).__name__}")
    T = len(images)
    if T != len(cameras):
        raise ValueError(f"got {T} images for {len(cameras)} cameras")
    if T < 2:
        raise ValueError("need at least two frames")
    feats = _Features()
    detected = [feats.detect(img) for img in images]
    w2c = cameras.w2c.detach().cpu().double().numpy()
    est = [np.eye(4)]
    rot_errs, trans_errs, failed = [], [], 0
    for i in range(T - 1):
        K_cv = _opencv_K(cameras.K[i])
        rel = feats.relative_pose(detected[i], detected[i + 1], K_cv)
        cmd = w2c[i + 1] @ np.linalg.inv(w2c[i])
        step = np.eye(4)
        if rel is None:
            failed += 1
        else:
            rot_errs.append(rotation_error_deg(rel.rotation, cmd[:3, :3]))
            te = translation_direction_error_deg(rel.translation, cmd[:3, 3])
            if not math.isnan(te):
                trans_errs.append(te)
            step[:3, :3], step[:3, 3] = rel.rotation, rel.translation
        est.append(step @ est[-1])
    centres_est = np.stack([-E[:3, :3].T @ E[:3, 3] for E in est])
    centres_cmd = np.stack([-E[:3, :3].T @ E[:3, 3] for E in w2c])
    ate = float("nan")
    if T >= 3:
        sim = umeyama(centres_est, centres_cmd)
        ate = float(np.sqrt(((sim.apply(centres_est) - centres_cmd) ** 2).sum(1).mean()))
    return CameraErrors(
        rot_err_deg=float(np.mean(rot_errs)) if rot_errs else float("nan"),
        trans_err_deg=float(np.mean(trans_errs)) if trans_errs else float("nan"),
        ate=ate,
        num_pairs=T - 1,
        num_failed=failed,
    )
