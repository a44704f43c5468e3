"""Image quality metrics: PSNR and SSIM over a whole frame or inside a mask.

Images are float ``(3, H, W)`` (or ``(B, 3, H, W)``) in ``[0, data_range]``; masks are bool
``(H, W)``, ``(1, H, W)`` or ``(B, 1, H, W)``, **True = the pixels to score** (this is a selection,
not the library's hole mask).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from worldstereo.camera import check_finite

__all__ = ["PSNR_CAP_DB", "blockiness", "capped", "mse", "psnr", "psnr_from_mse", "ssim", "ssim_map"]

#: Summaries average per-frame PSNR capped at this value (identical frames give +inf).
PSNR_CAP_DB = 60.0

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def _as_batched(name: str, image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have shape (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}")
    check_finite(name, image)
    return image.float()


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _as_batched("a", a), _as_batched("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b


def _as_mask(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``mask`` as (B, 1, H, W) bool broadcast to ``like`` (B, C, H, W), or None."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    m = mask.bool()
    while m.ndim < 4:
        m = m.unsqueeze(0)
    B, _, H, W = like.shape
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != (H, W) or m.shape[0] not in (1, B):
        raise ValueError(f"mask must have shape (H, W), (1, H, W) or (B, 1, H, W) matching the images, got {tuple(mask.shape)}")
    return m.expand(B, 1, H, W).to(like.device)


def mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean squared error over all channels of the selected pixels (NaN if the mask selects none)."""
    a, b = _check_pair(a, b)
    m = _as_mask(mask, a)
    err = (a - b).pow(2)
    if m is None:
        return float(err.mean())
    sel = m.expand_as(err)
    if not bool(sel.any()):
        return float("nan")
    return float(err[sel].mean())


def psnr_from_mse(value: float, data_range: float = 1.0) -> float:
    """``10 log10(data_range^2 / mse)``; +inf for mse 0, NaN for NaN."""
    if math.isnan(value):
        return float("nan")
    if value <= 0.0:
        return float("inf")
    return 10.0 * math.log10(data_range * data_range / value)


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of ``a`` against ``b``, pooled over the selected pixels.

    Args:
        a, b: (3, H, W) or (B, 3, H, W) images in [0, data_range].
        mask: optional bool selection (True = scored), (H, W), (1, H, W) or (B, 1, H, W).
        data_range: peak value (1 for images in [0, 1]).
    Returns:
        PSNR in dB: +inf for identical inputs, NaN when the mask selects nothing.
    """
    return psnr_from_mse(mse(a, b, mask), data_range)


def capped(value: float, cap: float = PSNR_CAP_DB) -> float:
    """``min(value, cap)`` (keeps NaN): for averaging PSNRs that may be infinite."""
    return value if math.isnan(value) else min(value, cap)


def _gaussian_1d(device: torch.device) -> list[float]:
    """The SSIM window's 1-D taps (11, sigma 1.5, summing to 1); the 2-D window is their outer product."""
    x = torch.arange(_SSIM_WINDOW, dtype=torch.float64, device=device) - (_SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * _SSIM_SIGMA**2))
    return (g / g.sum()).tolist()


def gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """The SSIM window (11x11 Gaussian, sigma 1.5, reflect padding) applied to (B, C, H, W), same size out.

    Separable: a vertical then a horizontal pass of 11 shifted, weighted adds each. A 2-D ``conv2d``
    in float64 takes torch's im2col path, whose column buffer (C x 121 x H x W doubles: 143 MB at
    256x192) was freshly mapped and zero-filled by the kernel on every call: in the memory
    ablation that was 34 million page faults and as much system time as user time.
    """
    g = _gaussian_1d(x.device)
    pad = _SSIM_WINDOW // 2
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = xp[..., 0:h, :] * g[0]
    for k in range(1, _SSIM_WINDOW):
        rows.add_(xp[..., k : k + h, :], alpha=g[k])
    out = rows[..., 0:w] * g[0]
    for k in range(1, _SSIM_WINDOW):
        out.add_(rows[..., k : k + w], alpha=g[k])
    return out


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03).

    The window is applied with reflect padding so the map covers every pixel; channels are averaged.

    Args:
        a, b: (3, H, W) or (B, 3, H, W) images in [0, data_range] (H, W >= 6).
    Returns:
        (B, 1, H, W) SSIM values (1 where the images agree).
    """
    a, b = _check_pair(a, b)
    a, b = a.double(), b.double()  # float32 cancellation in var/cov is ~1e-7, not negligible against C2
    C = a.shape[1]
    if min(a.shape[-2:]) <= _SSIM_WINDOW // 2:
        raise ValueError(f"images must be larger than {_SSIM_WINDOW // 2} pixels per side, got {tuple(a.shape[-2:])}")
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    # the five local moments in one blur: means, second moments and the cross moment
    mu_a, mu_b, aa, bb, ab = gaussian_blur(torch.cat([a, b, a * a, b * b, a * b], dim=1)).split(C, dim=1)
    var_a = aa - mu_a * mu_a
    var_b = bb - mu_b * mu_b
    cov = ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return (num / den).mean(dim=1, keepdim=True).float()


def ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 1.0) -> float:
    """Mean SSIM (see :func:`ssim_map`) over the frame, or over the selected pixels (NaN if none)."""
    smap = ssim_map(a, b, data_range)
    m = _as_mask(mask, smap)
    if m is None:
        return float(smap.mean())
    if not bool(m.any()):
        return float("nan")
    return float(smap[m].mean())


def blockiness(image: torch.Tensor, grid: int = 16) -> float:
    """Gradient energy on a ``grid``-pixel lattice relative to elsewhere (1.0: no lattice; > 1.15: squares show).

    The mean absolute difference between neighbouring pixels across the lattice lines (between
    columns ``grid k - 1`` and ``grid k``, and likewise rows), divided by the mean elsewhere, on the
    grey image. Patch-sized squares (enlarged points, per-token fills) put their edges on the lattice.

    Args:
        image: (3, H, W) or (H, W) float.
    Returns:
        the ratio (nan for a flat image).
    """
    g = image.float().mean(0) if image.ndim == 3 else image.float()
    dx, dy = (g[:, 1:] - g[:, :-1]).abs(), (g[1:] - g[:-1]).abs()
    on_x = torch.zeros(dx.shape[1], dtype=torch.bool)
    on_x[grid - 1 :: grid] = True
    on_y = torch.zeros(dy.shape[0], dtype=torch.bool)
    on_y[grid - 1 :: grid] = True
    on = torch.cat([dx[:, on_x].reshape(-1), dy[on_y].reshape(-1)])
    off = torch.cat([dx[:, ~on_x].reshape(-1), dy[~on_y].reshape(-1)])
    if on.numel() == 0 or off.numel() == 0 or float(off.mean()) == 0.0:
        return math.nan
    return float(on.mean() / off.mean())
