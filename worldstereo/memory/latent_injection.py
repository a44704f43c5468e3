"""Learnable heads that combine a rendered memory feature map with a VDM latent (per channel count C).

All three combinations leave a latent pixel exactly unchanged where nothing of the memory reaches
it (for cross-attention: where no pixel of its 3x3 neighbourhood is covered), so the output
differs from the input only where the memory is visible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["INJECTION_METHODS", "LatentInjectionHead"]

INJECTION_METHODS = ("cross_attention", "addition", "concatenation")


def _seeded_(module: nn.Module, generator: torch.Generator) -> None:
    """Default-style uniform init of every weight and bias from ``generator`` (not the global RNG)."""
    for p in module.parameters():
        fan_in = p.shape[1] * (p[0, 0].numel() if p.ndim > 2 else 1) if p.ndim >= 2 else p.shape[0]
        bound = 1.0 / math.sqrt(max(1, fan_in))
        with torch.no_grad():
            p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=generator))


class LatentInjectionHead(nn.Module):
    """Heads for one latent channel count ``C``.

    Attributes:
        to_latent: Linear ``feature_dim -> C`` applied to the memory's point features.
        mix: 1x1 convolution ``2C + 1 -> C`` over ``[latent, rendered, coverage]`` (concatenation).
        query, key: Linear ``C -> attn_dim`` for cross-attention.

    Args:
        feature_dim: point feature size of the memory.
        channels: latent channels ``C``.
        seed: deterministic init (independent of the global RNG).
        attn_dim: cross-attention key size.
    """

    def __init__(self, feature_dim: int, channels: int, seed: int = 0, attn_dim: int = 32) -> None:
        super().__init__()
        self.channels = channels
        self.attn_dim = attn_dim
        self.to_latent = nn.Linear(feature_dim, channels)
        self.mix = nn.Conv2d(2 * channels + 1, channels, kernel_size=1)
        self.query = nn.Linear(channels, attn_dim)
        self.key = nn.Linear(channels, attn_dim)
        _seeded_(self, torch.Generator().manual_seed(seed * 7919 + channels))

    def combine(
        self, latent: torch.Tensor, rendered: torch.Tensor, covered: torch.Tensor, method: str
    ) -> torch.Tensor:
        """Combine per frame.

        Args:
            latent: (N, C, H, W) latent frames.
            rendered: (N, C, H, W) memory features rendered into those frames (0 where uncovered).
            covered: (N, 1, H, W) bool, True where a memory point landed.
            method: one of :data:`INJECTION_METHODS`.
        Returns:
            (N, C, H, W), equal to ``latent`` wherever the memory does not reach.
        """
        cov = covered.to(latent.dtype)
        if method == "addition":
            return latent + rendered * cov
        if method == "concatenation":
            mixed = self.mix(torch.cat([latent, rendered * cov, cov], dim=1))
            return torch.where(covered, mixed, latent)
        if method == "cross_attention":
            return self._cross_attention(latent, rendered * cov, cov)
        raise ValueError(f"injection_method must be one of {INJECTION_METHODS}, got {method!r}")

    def _cross_attention(self, latent: torch.Tensor, rendered: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """Each latent token attends to the covered pixels of its 3x3 rendered neighbourhood; residual add."""
        n, c, h, w = latent.shape
        values = F.unfold(rendered, kernel_size=3, padding=1).view(n, c, 9, h * w)  # (n, C, 9, HW)
        mask = F.unfold(cov, kernel_size=3, padding=1).view(n, 9, h * w) > 0.5  # (n, 9, HW)
        q = self.query(latent.flatten(2).transpose(1, 2))  # (n, HW, d)
        k = self.key(values.permute(0, 3, 2, 1))  # (n, HW, 9, d)
        logits = torch.einsum("npd,npjd->npj", q, k) / math.sqrt(self.attn_dim)
        any_cov = mask.any(dim=1)  # (n, HW)
        logits = logits.masked_fill(~mask.transpose(1, 2), float("-inf"))
        logits = logits.masked_fill(~any_cov.unsqueeze(-1), 0.0)  # rows with nothing visible: finite
        weights = torch.softmax(logits, dim=-1) * any_cov.unsqueeze(-1)
        out = torch.einsum("npj,ncjp->ncp", weights, values).view(n, c, h, w)
        return latent + out
