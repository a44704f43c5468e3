"""Reconstruction quality of a point cloud against a true surface: precision, recall, F1 and AUC.

Definitions (as in Tanks and Temples / DTU-style evaluations):

* ``precision(tau)``: fraction of predicted points within ``tau`` of a true surface sample;
* ``recall(tau)``: fraction of true surface samples within ``tau`` of a predicted point;
* ``F1 = 2 P R / (P + R)`` (0 when both are 0);
* ``AUC``: the normalised area under ``F1(tau)`` for ``tau`` in ``(0, tau_max]``, taken as the mean
  of F1 over ``K`` evenly spaced thresholds ``tau_max * k / K`` (k = 1..K). A perfect reconstruction
  scores 1; a cloud offset by ``d`` everywhere scores about ``1 - d / tau_max``.

The true surface is a dense sample (``Scene.sample_surface``) cropped to what the cameras saw
(:func:`worldstereo.eval.visibility.visible_in`), so recall asks "how much of the seen surface does the
memory hold". Samples must be dense compared to ``tau`` (their spacing bounds the distance of a
perfect point from its nearest sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

__all__ = ["ReconstructionCurve", "ReconstructionScore", "reconstruction_curve"]


@dataclass(frozen=True)
class ReconstructionScore:
    """Precision, recall and F1 at one distance threshold ``tau`` (scene units)."""

    tau: float
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class ReconstructionCurve:
    """Precision / recall / F1 over thresholds, and their normalised areas.

    Attributes:
        taus: (K,) thresholds, ``tau_max * k / K``.
        precision, recall, f1: (K,) values at each threshold.
        auc_f1, auc_precision, auc_recall: means over the thresholds (see the module docstring).
        num_predicted, num_truth: sizes of the two point sets.
    """

    taus: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    auc_f1: float
    auc_precision: float
    auc_recall: float
    num_predicted: int
    num_truth: int

    @property
    def tau_max(self) -> float:
        return float(self.taus[-1])

    def at(self, tau: float) -> ReconstructionScore:
        """Scores at the listed threshold nearest to ``tau``."""
        k = int(np.argmin(np.abs(self.taus - tau)))
        return ReconstructionScore(float(self.taus[k]), float(self.precision[k]), float(self.recall[k]), float(self.f1[k]))


def _as_points(name: str, points) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().double().numpy()
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _f1(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    s = p + r
    return np.where(s > 0, 2 * p * r / np.where(s > 0, s, 1.0), 0.0)


def reconstruction_curve(predicted, truth, tau_max: float, num_thresholds: int = 50) -> ReconstructionCurve:
    """Precision/recall/F1 of ``predicted`` points against ``truth`` surface samples over thresholds.

    Args:
        predicted: (N, 3) reconstructed points (tensor or array), N >= 0.
        truth: (M, 3) true surface samples, M >= 1.
        tau_max: largest threshold (> 0, scene units).
        num_thresholds: K thresholds ``tau_max * k / K``, k = 1..K.
    Returns:
        :class:`ReconstructionCurve`.
    """
    pred = _as_points("predicted", predicted)
    gt = _as_points("truth", truth)
    if gt.shape[0] == 0:
        raise ValueError("truth must hold at least one point")
    if not np.isfinite(tau_max) or tau_max <= 0:
        raise ValueError(f"tau_max must be a positive number, got {tau_max!r}")
    if isinstance(num_thresholds, bool) or int(num_thresholds) < 1:
        raise ValueError(f"num_thresholds must be a positive integer, got {num_thresholds!r}")
    K = int(num_thresholds)
    taus = tau_max * np.arange(1, K + 1) / K
    if pred.shape[0] == 0:
        zeros = np.zeros(K)
        return ReconstructionCurve(taus, zeros, zeros, zeros, 0.0, 0.0, 0.0, 0, gt.shape[0])
    d_pred, _ = cKDTree(gt).query(pred, k=1, distance_upper_bound=tau_max * 1.001)
    d_gt, _ = cKDTree(pred).query(gt, k=1, distance_upper_bound=tau_max * 1.001)
    precision = np.searchsorted(np.sort(d_pred), taus, side="right") / pred.shape[0]
    recall = np.searchsorted(np.sort(d_gt), taus, side="right") / gt.shape[0]
    f1 = _f1(precision, recall)
    return ReconstructionCurve(
        taus=taus,
        precision=precision,
        recall=recall,
        f1=f1,
        auc_f1=float(f1.mean()),
        auc_precision=float(precision.mean()),
        auc_recall=float(recall.mean()),
        num_predicted=pred.shape[0],
        num_truth=gt.shape[0],
    )
