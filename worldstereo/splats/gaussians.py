"""A set of 3D Gaussians in the parametrisation of 3D Gaussian splatting (INRIA, gsplat).

World frame and axes: those of the memories and of ``pointcloud.ply`` (the start camera's world frame, OpenCV
camera axes: x right, y down, z forward). Colours are spherical harmonics of degree 0 only (view-independent).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SH_C0", "Gaussians", "quats_to_rotmats", "rgb_to_sh0", "rotmats_to_quats", "sh0_to_rgb"]

#: the degree-0 spherical harmonic's constant: ``rgb = 0.5 + SH_C0 * f_dc``
SH_C0 = 0.28209479177387814


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] (..., 3) -> degree-0 SH coefficients ``f_dc`` (..., 3)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    """Degree-0 SH coefficients (..., 3) -> RGB (..., 3), clamped at 0 below as gsplat does (not above)."""
    return (sh0 * SH_C0 + 0.5).clamp_min(0.0)


def quats_to_rotmats(quats: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) as w, x, y, z (normalised here) -> rotation matrices (..., 3, 3)."""
    q = torch.nn.functional.normalize(quats, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def rotmats_to_quats(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as w, x, y, z with w >= 0 (Shepperd's method)."""
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    diag = torch.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], dim=-1)
    k = diag.argmax(dim=-1)
    q = torch.empty(m.shape[0], 4, dtype=R.dtype, device=R.device)
    # the largest of 4w^2, 4x^2, 4y^2, 4z^2 gives the best-conditioned square root
    cases = [
        lambda a: (1 + a[:, 0, 0] + a[:, 1, 1] + a[:, 2, 2], a[:, 2, 1] - a[:, 1, 2], a[:, 0, 2] - a[:, 2, 0],
                   a[:, 1, 0] - a[:, 0, 1], 0),
        lambda a: (1 + a[:, 0, 0] - a[:, 1, 1] - a[:, 2, 2], a[:, 2, 1] - a[:, 1, 2], a[:, 0, 1] + a[:, 1, 0],
                   a[:, 0, 2] + a[:, 2, 0], 1),
        lambda a: (1 - a[:, 0, 0] + a[:, 1, 1] - a[:, 2, 2], a[:, 0, 2] - a[:, 2, 0], a[:, 0, 1] + a[:, 1, 0],
                   a[:, 1, 2] + a[:, 2, 1], 2),
        lambda a: (1 - a[:, 0, 0] - a[:, 1, 1] + a[:, 2, 2], a[:, 1, 0] - a[:, 0, 1], a[:, 0, 2] + a[:, 2, 0],
                   a[:, 1, 2] + a[:, 2, 1], 3),
    ]
    for case, fn in enumerate(cases):
        sel = k == case
        if not bool(sel.any()):
            continue
        t, a, b, c, slot = fn(m[sel])
        s = 0.5 / torch.sqrt(t.clamp_min(1e-12))
        big = 0.5 * torch.sqrt(t.clamp_min(1e-12))
        if slot == 0:
            vals = torch.stack([big, a * s, b * s, c * s], dim=-1)
        elif slot == 1:
            vals = torch.stack([a * s, big, b * s, c * s], dim=-1)
        elif slot == 2:
            vals = torch.stack([a * s, b * s, big, c * s], dim=-1)
        else:
            vals = torch.stack([a * s, b * s, c * s, big], dim=-1)
        q[sel] = vals
    q = torch.where(q[:, :1] < 0, -q, q)
    return torch.nn.functional.normalize(q, dim=-1).reshape(R.shape[:-2] + (4,))


@dataclass
class Gaussians:
    """N 3D Gaussians as splatting stores them.

    Attributes:
        means: (N, 3) float32 centres, world frame.
        log_scales: (N, 3) float32 natural logs of the standard deviations along the rotation's axes.
        quats: (N, 4) float32 unit rotations as w, x, y, z (the Gaussian's axes are the matrix's columns).
        opacity_logits: (N,) float32 opacities as logits (``sigmoid`` gives the opacity).
        sh0: (N, 3) float32 degree-0 SH coefficients (:func:`sh0_to_rgb` gives the colour).
    """

    means: torch.Tensor
    log_scales: torch.Tensor
    quats: torch.Tensor
    opacity_logits: torch.Tensor
    sh0: torch.Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        shapes = {"means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,), "sh0": (n, 3)}
        for name, shape in shapes.items():
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"Gaussians.{name} must have shape {shape} (N = {n}), got {got}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"Gaussians.{name} holds NaN or inf values")

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @classmethod
    def from_values(cls, means: torch.Tensor, scales: torch.Tensor, rotations: torch.Tensor, opacities: torch.Tensor,
                    rgb: torch.Tensor) -> Gaussians:
        """From plain values: scales (N, 3) > 0, rotations (N, 3, 3), opacities (N,) in (0, 1), rgb (N, 3) in [0, 1]."""
        eps = 1e-6
        o = opacities.float().clamp(eps, 1 - eps)
        return cls(means.float().contiguous(), torch.log(scales.float().clamp_min(1e-12)),
                   rotmats_to_quats(rotations.float()), torch.log(o / (1 - o)), rgb_to_sh0(rgb.float()))

    @property
    def scales(self) -> torch.Tensor:
        """(N, 3) standard deviations."""
        return self.log_scales.exp()

    @property
    def opacities(self) -> torch.Tensor:
        """(N,) opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    @property
    def colors(self) -> torch.Tensor:
        """(N, 3) RGB (degree-0 SH evaluated; clamped at 0)."""
        return sh0_to_rgb(self.sh0)

    @property
    def rotations(self) -> torch.Tensor:
        """(N, 3, 3) rotation matrices."""
        return quats_to_rotmats(self.quats)

    def covariances(self) -> torch.Tensor:
        """(N, 3, 3) world covariances ``R S S^T R^T``."""
        M = self.rotations * self.scales[:, None, :]
        return M @ M.transpose(1, 2)

    def subset(self, index: torch.Tensor) -> Gaussians:
        """The Gaussians at ``index`` (a boolean mask or indices)."""
        return Gaussians(self.means[index], self.log_scales[index], self.quats[index], self.opacity_logits[index],
                         self.sh0[index])
