"""k-nearest-neighbour indexes over a static 3-D point set, behind one small interface.

``kd_tree`` (scipy ``cKDTree``), ``ball_tree`` (scikit-learn ``BallTree``) and ``cuda_knn``
(a uniform grid on the GPU, :mod:`worldstereo.memory.grid_knn`) answer the same queries with the
same neighbours. :class:`GridKNNIndex` is that grid on any device (the tests run it on the CPU);
:class:`TorchBruteForceIndex` is exact brute force on any device, the slow, obvious reference.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "SPATIAL_INDEXES",
    "BallTreeIndex",
    "CudaKNNIndex",
    "GridKNNIndex",
    "KDTreeIndex",
    "Neighbors",
    "SpatialIndex",
    "TorchBruteForceIndex",
    "make_spatial_index",
]

SPATIAL_INDEXES = ("kd_tree", "ball_tree", "cuda_knn")


@dataclass(frozen=True)
class Neighbors:
    """Result of a k-nearest-neighbour query.

    Attributes:
        distances: (Q, k) float32 Euclidean distances, ascending along k.
        indices: (Q, k) int64 indices into the indexed points.
    """

    distances: torch.Tensor
    indices: torch.Tensor


def _check_points(name: str, points: torch.Tensor) -> None:
    if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[1] != 3:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, 3), got {shape}")
    if points.is_floating_point() and not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} contains NaN or inf values")


class SpatialIndex(ABC):
    """A k-NN index over a fixed set of points: ``build`` once, then ``query`` / ``nearest``."""

    name: str = ""

    def __init__(self) -> None:
        self.num_points = 0

    def build(self, points: torch.Tensor) -> SpatialIndex:
        """Index ``points`` (N, 3) (world coordinates); replaces any previous set. Returns self."""
        _check_points("points", points)
        self.num_points = int(points.shape[0])
        self._build(points)
        return self

    def query(self, points: torch.Tensor, k: int) -> Neighbors:
        """The ``min(k, N)`` nearest indexed points of each of ``points`` (Q, 3).

        Results live on the device of ``points``. Raises ``ValueError`` for an empty index.
        """
        _check_points("query points", points)
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if self.num_points == 0:
            raise ValueError("the spatial index is empty: build() it with at least one point")
        k = min(k, self.num_points)
        if points.shape[0] == 0:
            empty = points.new_zeros(0, k)
            return Neighbors(empty.float(), empty.long())
        dist, idx = self._query(points, k)
        return Neighbors(dist.to(points.device, torch.float32), idx.to(points.device, torch.int64))

    def nearest(self, points: torch.Tensor, max_distance: float = float("inf")) -> Neighbors:
        """Nearest indexed point of each query; ``(Q, 1)`` with index -1 and distance inf beyond ``max_distance``."""
        nb = self.query(points, 1)
        far = nb.distances > max_distance
        return Neighbors(
            nb.distances.masked_fill(far, float("inf")), nb.indices.masked_fill(far, -1)
        )

    @abstractmethod
    def _build(self, points: torch.Tensor) -> None: ...

    @abstractmethod
    def _query(self, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class KDTreeIndex(SpatialIndex):
    """scipy ``cKDTree`` on the CPU (queries use the calling thread's share of the thread budget)."""

    name = "kd_tree"

    def _build(self, points: torch.Tensor) -> None:
        from scipy.spatial import cKDTree

        self._tree = cKDTree(points.detach().cpu().double().numpy())

    def _query(self, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        from worldstereo.threads import current_threads

        dist, idx = self._tree.query(points.detach().cpu().double().numpy(), k=k, workers=current_threads())
        return torch.from_numpy(np.asarray(dist).reshape(-1, k)), torch.from_numpy(
            np.asarray(idx).reshape(-1, k)
        )


class BallTreeIndex(SpatialIndex):
    """scikit-learn ``BallTree`` on the CPU."""

    name = "ball_tree"

    def _build(self, points: torch.Tensor) -> None:
        from sklearn.neighbors import BallTree

        self._tree = BallTree(points.detach().cpu().double().numpy())

    def _query(self, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        dist, idx = self._tree.query(points.detach().cpu().double().numpy(), k=k, sort_results=True)
        return torch.from_numpy(dist), torch.from_numpy(idx)


class TorchBruteForceIndex(SpatialIndex):
    """Exact brute force on ``device``: ``cdist`` + ``topk`` over chunks of queries.

    Args:
        device: where the points live and the distances are computed.
        chunk_elements: bound on ``chunk x N`` distance entries held at once.
    """

    name = "brute_force"

    def __init__(self, device: str | torch.device = "cpu", chunk_elements: int = 1 << 26) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.chunk_elements = int(chunk_elements)

    def _build(self, points: torch.Tensor) -> None:
        self._points = points.detach().to(self.device, torch.float32).contiguous()

    def _query(self, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        from worldstereo.memory.grid_knn import brute_force_knn

        return brute_force_knn(self._points, points.detach().to(self.device, torch.float32), k, self.chunk_elements)


class GridKNNIndex(SpatialIndex):
    """Exact k-NN on a uniform grid in torch on ``device`` (:mod:`worldstereo.memory.grid_knn`).

    The grid is sized for each ``k`` asked (built on first use, then kept with the points).

    Args:
        device: where the points, the grid and the search live; results move to the queries' device.
        max_pairs: bound on candidate (query, point) pairs held at once.
    """

    name = "grid_knn"

    def __init__(self, device: str | torch.device = "cpu", max_pairs: int = 1 << 25) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.max_pairs = int(max_pairs)

    def _build(self, points: torch.Tensor) -> None:
        self._points = points.detach().to(self.device, torch.float32).contiguous()
        self._grids: dict[int, object] = {}

    def _query(self, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        from worldstereo.memory.grid_knn import build_grid, grid_knn

        if k not in self._grids:
            self._grids[k] = build_grid(self._points, k)
        return grid_knn(self._grids[k], points.detach().to(self.device), k, self.max_pairs)


class CudaKNNIndex(GridKNNIndex):
    """:class:`GridKNNIndex` on a CUDA device; raises ``RuntimeError`` at construction without one."""

    name = "cuda_knn"

    def __init__(self, device: str | torch.device = "cuda", max_pairs: int = 1 << 25) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError(
                "spatial_index='cuda_knn' needs a CUDA device, but torch.cuda.is_available() is False; "
                "use 'kd_tree' or 'ball_tree' on this machine"
            )
        super().__init__(device, max_pairs)
        if self.device.type != "cuda":
            raise ValueError(f"device must be a CUDA device for cuda_knn, got {self.device}")


def make_spatial_index(name: str, device: str | torch.device | None = None) -> SpatialIndex:
    """A fresh, empty index by name: one of :data:`SPATIAL_INDEXES`; ``device`` places ``cuda_knn``
    (default: the current CUDA device; the CPU indexes ignore it)."""
    if name == "kd_tree":
        return KDTreeIndex()
    if name == "ball_tree":
        return BallTreeIndex()
    if name == "cuda_knn":
        dev = torch.device(device) if device is not None else None
        return CudaKNNIndex(dev if dev is not None and dev.type == "cuda" else "cuda")
    raise ValueError(f"spatial_index must be one of {SPATIAL_INDEXES}, got {name!r}")
