"""Point encoders: world coordinates -> fixed-size embeddings for the global geometric memory."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FourierPointEncoder"]


class FourierPointEncoder(nn.Module):
    """Random Fourier features of 3-D points (Tancik et al., 2020), unit norm.

    ``embed(p) = [sin(2 pi p B), cos(2 pi p B)] / sqrt(out_dim / 2)`` where the ``(3, out_dim / 2)``
    frequency matrix ``B`` has random unit directions and magnitudes spread log-uniformly over
    ``[min_frequency, max_frequency]`` cycles per scene unit. ``B`` is drawn once from a seeded
    generator (independent of the global RNG) and stored as a buffer, so the encoding is a
    deterministic function of the point and the seed.

    Args:
        out_dim: embedding size (even, > 0).
        min_frequency, max_frequency: frequency range in cycles per scene unit (0 < min <= max).
        seed: seed of the frequency draw.
    """

    def __init__(
        self, out_dim: int = 256, min_frequency: float = 0.1, max_frequency: float = 10.0, seed: int = 0
    ) -> None:
        super().__init__()
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim <= 0 or out_dim % 2:
            raise ValueError(f"out_dim must be a positive even integer, got {out_dim!r}")
        if not (0.0 < min_frequency <= max_frequency < math.inf):
            raise ValueError(
                f"min_frequency and max_frequency must satisfy 0 < min <= max, got {min_frequency}, {max_frequency}"
            )
        self.out_dim = out_dim
        half = out_dim // 2
        gen = torch.Generator().manual_seed(seed)
        directions = torch.randn(3, half, generator=gen, dtype=torch.float64)
        directions = directions / directions.norm(dim=0, keepdim=True)
        log_f = torch.empty(half, dtype=torch.float64).uniform_(
            math.log(min_frequency), math.log(max_frequency), generator=gen
        )
        self.register_buffer("frequencies", (2.0 * math.pi * directions * log_f.exp()).float())

    def forward(self, points: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Encode points.

        Args:
            points: (..., 3) world points.
            out: optional (..., out_dim) tensor to write into.
        Returns:
            (..., out_dim) float embeddings of unit L2 norm.
        """
        if points.shape[-1] != 3:
            raise ValueError(f"points must have shape (..., 3), got {tuple(points.shape)}")
        B = self.frequencies.to(device=points.device)
        phase = points.to(B.dtype) @ B
        half = B.shape[1]
        if out is None:
            out = torch.empty(*phase.shape[:-1], 2 * half, dtype=phase.dtype, device=phase.device)
        torch.sin(phase, out=out[..., :half])
        torch.cos(phase, out=out[..., half:])
        out.mul_(1.0 / math.sqrt(half))
        return out
