"""Evaluation: image metrics, ground-truth visibility, GGM reconstruction, camera-following errors and
the memory ablation (``worldstereo eval`` / ``python -m worldstereo.eval``).

Modules: :mod:`~worldstereo.eval.metrics` (PSNR, SSIM), :mod:`~worldstereo.eval.visibility` (revisited
regions, cross-view consistency), :mod:`~worldstereo.eval.reconstruction` (precision / recall / F1 / AUC),
:mod:`~worldstereo.eval.camera_errors` (RotErr, TransErr, ATE), :mod:`~worldstereo.eval.ablation` (the
ablation and the CLI hooks), :mod:`~worldstereo.eval.report` (markdown, JSON, charts).
"""

from worldstereo.eval.ablation import (
    ABLATION_CONFIGS,
    EvalReport,
    EvalSettings,
    add_eval_arguments,
    eval_command,
    run_eval,
)
from worldstereo.eval.camera_errors import CameraErrors, camera_following_errors, umeyama
from worldstereo.eval.metrics import psnr, ssim
from worldstereo.eval.reconstruction import ReconstructionCurve, reconstruction_curve

__all__ = [
    "ABLATION_CONFIGS",
    "CameraErrors",
    "EvalReport",
    "EvalSettings",
    "ReconstructionCurve",
    "add_eval_arguments",
    "camera_following_errors",
    "eval_command",
    "psnr",
    "reconstruction_curve",
    "run_eval",
    "ssim",
    "umeyama",
]
