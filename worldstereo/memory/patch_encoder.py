"""An invertible patch encoder: image patches <-> SSM token features.

The Spatial-Stereo Memory stores one token per ``p x p`` patch of a keyframe. With the default
encoder, a token's feature is an orthonormal linear map of the patch's centred pixels, so any
convex combination of token features (an attention output) decodes back to the same combination
of patches. ``feature_dim`` must be >= ``3 p^2`` for the map to be invertible.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEncoder(nn.Module):
    """Orthonormal patch embedding with an exact inverse on its image.

    Args:
        patch_size: side ``p`` of the square patches, in pixels.
        feature_dim: token feature size ``D >= 3 p^2``.
        seed: seed of the fixed random orthonormal basis (deterministic across runs and devices).
    """

    def __init__(self, patch_size: int = 16, feature_dim: int = 768, seed: int = 0) -> None:
        super().__init__()
        if patch_size <= 0:
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        in_dim = 3 * patch_size * patch_size
        if feature_dim < in_dim:
            raise ValueError(
                f"feature_dim ({feature_dim}) must be >= 3 * patch_size^2 ({in_dim}) for an invertible encoder"
            )
        self.patch_size = patch_size
        self.feature_dim = feature_dim
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(feature_dim, in_dim, generator=g, dtype=torch.float64))
        self.register_buffer("basis", q.to(torch.float32))  # (D, 3 p^2), orthonormal columns

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(rows, cols)`` for an image of ``height x width`` (both multiples of p)."""
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"image size {width}x{height} must be a multiple of patch_size {p}")
        return height // p, width // p

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, rows*cols, C*p*p), tokens in row-major grid order."""
        p = self.patch_size
        b, c, h, w = images.shape
        self.grid_shape(h, w)
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, (h // p) * (w // p), c * p * p)

    def unpatchify(self, tokens: torch.Tensor, height: int, width: int, channels: int = 3) -> torch.Tensor:
        """Inverse of :meth:`patchify`: (B, rows*cols, C*p*p) -> (B, C, H, W)."""
        p = self.patch_size
        rows, cols = self.grid_shape(height, width)
        b = tokens.shape[0]
        x = tokens.reshape(b, rows, cols, channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, channels, height, width)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> token features (B, rows*cols, D)."""
        return (self.patchify(images) - 0.5) @ self.basis.T.to(images)

    def decode(self, features: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Token features (B, rows*cols, D) -> images (B, 3, H, W) (exact inverse of :meth:`encode`)."""
        return self.unpatchify(features @ self.basis.to(features) + 0.5, height, width)
