"""The compiled pass of :func:`worldstereo.panorama.lift.owned_pixels` (numba, imported only when used)."""

from __future__ import annotations

import numba

__all__ = ["owned_kernel"]


@numba.njit(cache=True, nogil=True)
def owned_kernel(dirs, R, K, lower, width, height, out):  # pragma: no cover - compiled
    """``out[p]``: no view ``j`` holds direction ``dirs[p]`` (camera z = 1 in the own view) nearer to its axis."""
    for p in range(dirs.shape[0]):
        dx, dy, dz = dirs[p, 0], dirs[p, 1], dirs[p, 2]
        own = True
        for j in range(R.shape[0]):
            z = R[j, 2, 0] * dx + R[j, 2, 1] * dy + R[j, 2, 2] * dz  # > 1: nearer to j's axis
            if z < 1.0 or (z == 1.0 and not lower[j]):
                continue
            u = K[j, 0, 0] * (R[j, 0, 0] * dx + R[j, 0, 1] * dy + R[j, 0, 2] * dz) / z + K[j, 0, 2]
            v = K[j, 1, 1] * (R[j, 1, 0] * dx + R[j, 1, 1] * dy + R[j, 1, 2] * dz) / z + K[j, 1, 2]
            if 0.0 <= u < width and 0.0 <= v < height:
                own = False
                break
        out[p] = own
