"""Batched pinhole cameras: the one camera type of the project.

Conventions (DESIGN.md, "Conventions"):

* ``extrinsics`` are **world-to-camera** 4x4 matrices ``T_camera_world`` in **OpenCV axes**
  (x right, y down, z forward);
* ``intrinsics`` are 3x3 matrices in **pixels**; a pixel ``(row i, column j)`` covers the
  continuous square ``[j, j+1) x [i, i+1)`` and its centre is at ``(j + 0.5, i + 0.5)``;
* depth is the camera-frame ``z`` (not the distance along the ray); ``0`` means unknown.

Every tensor is batched with a leading ``B``; a single (3, 3) / (4, 4) matrix is promoted to
``B = 1`` and a batch of one broadcasts against the other argument's batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "CameraParameters",
    "Rays",
    "check_finite",
    "check_rotation",
    "opencv_to_opengl",
    "opengl_to_opencv",
]

# Tolerance on ``R^T R - I`` (and on ``det R - 1``) for a matrix to count as a rotation.
# Loose enough for poses stored with ~6 decimals in JSON, tight enough to reject scale or shear.
ROTATION_TOLERANCE = 1e-3

# Flips the y and z axes: OpenCV camera axes (x right, y down, z forward) <-> OpenGL camera axes
# (x right, y up, z backward). Its own inverse.
_CV_GL_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


@dataclass(frozen=True)
class Rays:
    """Per-pixel camera rays in world coordinates.

    Attributes:
        origins: (B, H, W, 3) camera centres, repeated per pixel.
        directions: (B, H, W, 3) unit directions through the pixel centres.
    """

    origins: torch.Tensor
    directions: torch.Tensor


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` if ``tensor`` holds NaN or inf."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or inf values")


def check_rotation(name: str, rotations: torch.Tensor, tol: float = ROTATION_TOLERANCE) -> None:
    """Raise ``ValueError`` naming ``name`` unless every ``(..., 3, 3)`` matrix is a proper rotation."""
    r = rotations.double()
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    ortho_err = (r.transpose(-1, -2) @ r - eye).abs().amax(dim=(-1, -2))
    det = torch.linalg.det(r)
    bad = (ortho_err > tol) | ((det - 1.0).abs() > tol)
    if bool(bad.any()):
        idx = int(torch.nonzero(bad.reshape(-1))[0])
        raise ValueError(
            f"{name}[{idx}] is not a rotation (|R^T R - I| = {float(ortho_err.reshape(-1)[idx]):.2e}, "
            f"det = {float(det.reshape(-1)[idx]):.4f})"
        )


def opencv_to_opengl(T_world_camera: torch.Tensor) -> torch.Tensor:
    """Camera-to-world poses with OpenCV camera axes -> the same poses with OpenGL camera axes.

    Args:
        T_world_camera: (..., 4, 4) camera-to-world, camera axes x right, y down, z forward.
    Returns:
        (..., 4, 4) camera-to-world, camera axes x right, y up, z backward (nerfstudio, Blender).
    """
    return T_world_camera @ _CV_GL_FLIP.to(T_world_camera)


def opengl_to_opencv(T_world_camera: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`opencv_to_opengl` (the axis flip is its own inverse)."""
    return T_world_camera @ _CV_GL_FLIP.to(T_world_camera)


def _as_float_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value
    elif isinstance(value, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(value))
    else:  # Python numbers and lists: float32, the library's working precision
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a tensor or array of numbers: {exc}") from None
    if not t.is_floating_point():
        t = t.to(torch.float32)
    return t


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class CameraParameters:
    """A batch of ``B`` pinhole cameras sharing one image size.

    Args:
        intrinsics: (3, 3) or (B, 3, 3) pixel intrinsics ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``.
        extrinsics: (4, 4) or (B, 4, 4) world-to-camera, OpenCV axes.
        width: image width in pixels (> 0).
        height: image height in pixels (> 0).

    Floating tensors and arrays keep their dtype (float64 stays exact for file round trips);
    Python lists and integer inputs become float32. Raises ``ValueError`` naming the argument for a wrong shape, NaN/inf, a
    non-positive size or focal length, or an extrinsic whose rotation block is not a rotation.
    """

    def __init__(self, intrinsics: Any, extrinsics: Any, width: int, height: int) -> None:
        K = _as_float_tensor("intrinsics", intrinsics)
        E = _as_float_tensor("extrinsics", extrinsics)
        if K.ndim == 2:
            K = K.unsqueeze(0)
        if E.ndim == 2:
            E = E.unsqueeze(0)
        if K.ndim != 3 or K.shape[-2:] != (3, 3):
            raise ValueError(f"intrinsics must have shape (3, 3) or (B, 3, 3), got {tuple(K.shape)}")
        if E.ndim != 3 or E.shape[-2:] != (4, 4):
            raise ValueError(f"extrinsics must have shape (4, 4) or (B, 4, 4), got {tuple(E.shape)}")
        if K.shape[0] != E.shape[0]:
            if K.shape[0] == 1:
                K = K.expand(E.shape[0], 3, 3)
            elif E.shape[0] == 1:
                E = E.expand(K.shape[0], 4, 4)
            else:
                raise ValueError(
                    f"intrinsics batch ({K.shape[0]}) and extrinsics batch ({E.shape[0]}) do not match"
                )
        if K.shape[0] == 0:
            raise ValueError("intrinsics and extrinsics must hold at least one camera")
        check_finite("intrinsics", K)
        check_finite("extrinsics", E)
        if bool((K[:, 0, 0] <= 0).any()) or bool((K[:, 1, 1] <= 0).any()):
            raise ValueError("intrinsics must have positive focal lengths fx and fy")
        last_k = K.new_tensor([0.0, 0.0, 1.0])
        if not torch.allclose(K[:, 2, :], last_k.expand_as(K[:, 2, :]), atol=1e-6):
            raise ValueError("intrinsics must have last row [0, 0, 1]")
        last_e = E.new_tensor([0.0, 0.0, 0.0, 1.0])
        if not torch.allclose(E[:, 3, :], last_e.expand_as(E[:, 3, :]), atol=1e-6):
            raise ValueError("extrinsics must have last row [0, 0, 0, 1]")
        check_rotation("extrinsics", E[:, :3, :3])
        self.width = _check_size("width", width)
        self.height = _check_size("height", height)
        dtype = torch.promote_types(K.dtype, E.dtype)
        self.intrinsics = K.to(dtype=dtype, device=E.device).contiguous()
        self.extrinsics = E.to(dtype=dtype).contiguous()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_fov(
        cls,
        fov_y: float | Sequence[float] | torch.Tensor,
        width: int,
        height: int,
        extrinsics: Any | None = None,
        degrees: bool = False,
    ) -> CameraParameters:
        """Cameras with a centred principal point and square pixels from a vertical field of view.

        Args:
            fov_y: vertical field of view, scalar or (B,); radians unless ``degrees``.
            width, height: image size in pixels.
            extrinsics: (4, 4) or (B, 4, 4) world-to-camera; identity if omitted.
        """
        fov = torch.as_tensor(fov_y, dtype=torch.float32).reshape(-1)
        if degrees:
            fov = torch.deg2rad(fov)
        if not bool(torch.isfinite(fov).all()) or bool(((fov <= 0) | (fov >= math.pi)).any()):
            raise ValueError(f"fov_y must lie in (0, pi) radians, got {fov.tolist()}")
        _check_size("width", width)
        _check_size("height", height)
        f = 0.5 * height / torch.tan(0.5 * fov)
        K = torch.zeros(fov.shape[0], 3, 3, dtype=torch.float32)
        K[:, 0, 0] = f
        K[:, 1, 1] = f
        K[:, 0, 2] = 0.5 * width
        K[:, 1, 2] = 0.5 * height
        K[:, 2, 2] = 1.0
        if extrinsics is None:
            extrinsics = torch.eye(4, dtype=torch.float32)
        return cls(K, extrinsics, width, height)

    @classmethod
    def look_at(
        cls,
        eye: Any,
        target: Any,
        up: Any = (0.0, -1.0, 0.0),
        fov_y: float = math.radians(60.0),
        width: int = 512,
        height: int = 384,
        intrinsics: Any | None = None,
    ) -> CameraParameters:
        """Cameras at ``eye`` looking at ``target``.

        Args:
            eye: (3,) or (B, 3) camera centres in world coordinates.
            target: (3,) or (B, 3) points the optical axes pass through.
            up: (3,) world up; the image's "up" (-y in OpenCV axes) is aligned with it. The
                default ``(0, -1, 0)`` is the up of an OpenCV world whose camera 0 is the identity.
            fov_y: vertical field of view in radians (ignored if ``intrinsics`` is given).
            intrinsics: optional (3, 3) or (B, 3, 3) pixel intrinsics.
        """
        eye_t = _as_float_tensor("eye", eye).reshape(-1, 3)
        target_t = _as_float_tensor("target", target).reshape(-1, 3).to(eye_t)
        up_t = _as_float_tensor("up", up).reshape(3).to(eye_t)
        check_finite("eye", eye_t)
        check_finite("target", target_t)
        check_finite("up", up_t)
        eye_t, target_t = torch.broadcast_tensors(eye_t, target_t)
        z = target_t - eye_t
        zn = z.norm(dim=-1, keepdim=True)
        if bool((zn < 1e-12).any()):
            raise ValueError("target must differ from eye")
        z = z / zn
        x = torch.cross(-up_t.expand_as(z), z, dim=-1)  # right = down x forward
        xn = x.norm(dim=-1, keepdim=True)
        if bool((xn < 1e-9).any()):
            raise ValueError("up must not be parallel to the viewing direction")
        x = x / xn
        y = torch.cross(z, x, dim=-1)
        R_world_camera = torch.stack([x, y, z], dim=-1)  # columns are camera axes in world
        c2w = torch.eye(4, dtype=eye_t.dtype).repeat(eye_t.shape[0], 1, 1)
        c2w[:, :3, :3] = R_world_camera
        c2w[:, :3, 3] = eye_t
        w2c = torch.linalg.inv(c2w)
        if intrinsics is not None:
            return cls(intrinsics, w2c, width, height)
        return cls.from_fov(fov_y, width, height, extrinsics=w2c)

    @classmethod
    def from_c2w(cls, intrinsics: Any, c2w: Any, width: int, height: int) -> CameraParameters:
        """Build from camera-to-world poses (OpenCV axes) instead of world-to-camera."""
        T = _as_float_tensor("c2w", c2w)
        if T.shape[-2:] != (4, 4):
            raise ValueError(f"c2w must have shape (4, 4) or (B, 4, 4), got {tuple(T.shape)}")
        check_finite("c2w", T)
        check_rotation("c2w", T[..., :3, :3])
        return cls(intrinsics, _invert_rigid(T), width, height)

    @classmethod
    def cat(cls, cameras: Sequence[CameraParameters]) -> CameraParameters:
        """Concatenate batches that share an image size."""
        if not cameras:
            raise ValueError("cameras must not be empty")
        w, h = cameras[0].width, cameras[0].height
        for c in cameras:
            if (c.width, c.height) != (w, h):
                raise ValueError(f"cameras must share one image size, got {(c.width, c.height)} and {(w, h)}")
        dtype = cameras[0].dtype
        return cls(
            torch.cat([c.intrinsics.to(dtype) for c in cameras]),
            torch.cat([c.extrinsics.to(dtype) for c in cameras]),
            w,
            h,
        )

    # ------------------------------------------------------------------ container protocol
    def __len__(self) -> int:
        return self.extrinsics.shape[0]

    def __getitem__(self, index: int | slice | torch.Tensor | Sequence[int]) -> CameraParameters:
        """Select cameras; an integer index keeps the batch dimension (B = 1)."""
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= int(index) < n:
                raise IndexError(f"camera index {index} out of range for {n} cameras")
            index = slice(int(index) % n, int(index) % n + 1)
        K, E = self.intrinsics[index], self.extrinsics[index]
        if E.ndim == 2:
            K, E = K.unsqueeze(0), E.unsqueeze(0)
        return CameraParameters._trusted(K, E, self.width, self.height)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (
            f"CameraParameters(B={len(self)}, width={self.width}, height={self.height}, "
            f"dtype={self.dtype}, device={self.device})"
        )

    @classmethod
    def _trusted(cls, K: torch.Tensor, E: torch.Tensor, width: int, height: int) -> CameraParameters:
        """Build without validation from tensors that came out of a validated instance."""
        obj = cls.__new__(cls)
        obj.intrinsics, obj.extrinsics, obj.width, obj.height = K, E, width, height
        return obj

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> CameraParameters:
        """Move (and optionally cast) both matrices; returns a new object."""
        return CameraParameters._trusted(
            self.intrinsics.to(device=device, dtype=dtype),
            self.extrinsics.to(device=device, dtype=dtype),
            self.width,
            self.height,
        )

    def cuda(self) -> CameraParameters:
        return self.to("cuda")

    def cpu(self) -> CameraParameters:
        return self.to("cpu")

    @property
    def device(self) -> torch.device:
        return self.extrinsics.device

    @property
    def dtype(self) -> torch.dtype:
        return self.extrinsics.dtype

    # ------------------------------------------------------------------ derived quantities
    @property
    def K(self) -> torch.Tensor:
        """(B, 3, 3) intrinsics."""
        return self.intrinsics

    @property
    def w2c(self) -> torch.Tensor:
        """(B, 4, 4) world-to-camera ``T_camera_world`` (the extrinsics)."""
        return self.extrinsics

    @property
    def c2w(self) -> torch.Tensor:
        """(B, 4, 4) camera-to-world ``T_world_camera``, OpenCV camera axes."""
        return _invert_rigid(self.extrinsics)

    @property
    def camera_centers(self) -> torch.Tensor:
        """(B, 3) camera centres in world coordinates, ``-R^T t``."""
        R, t = self.extrinsics[:, :3, :3], self.extrinsics[:, :3, 3]
        return -(R.transpose(1, 2) @ t.unsqueeze(-1)).squeeze(-1)

    @property
    def fov_y(self) -> torch.Tensor:
        """(B,) vertical field of view in radians."""
        return 2.0 * torch.atan(0.5 * self.height / self.intrinsics[:, 1, 1])

    @property
    def fov_x(self) -> torch.Tensor:
        """(B,) horizontal field of view in radians."""
        return 2.0 * torch.atan(0.5 * self.width / self.intrinsics[:, 0, 0])

    def resized(self, width: int, height: int) -> CameraParameters:
        """The same cameras for an image resampled to ``width x height``.

        Continuous pixel coordinates scale exactly (the +0.5 centre convention makes the
        image corners ``(0, 0)`` and ``(W, H)`` fixed points of the scaling).
        """
        width, height = _check_size("width", width), _check_size("height", height)
        sx, sy = width / self.width, height / self.height
        S = torch.diag(self.intrinsics.new_tensor([sx, sy, 1.0]))
        return CameraParameters._trusted(S @ self.intrinsics, self.extrinsics.clone(), width, height)

    # ------------------------------------------------------------------ projection
    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points (B, N, 3) or (N, 3) -> camera-frame points (B, N, 3)."""
        pts = self._batched_points("points", points)
        E = self.extrinsics.to(pts.dtype)
        R, t = E[:, :3, :3], E[:, :3, 3]
        return pts @ R.transpose(1, 2) + t.unsqueeze(1)

    def project(self, points: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points to continuous pixel coordinates.

        Args:
            points: (B, N, 3) or (N, 3) world points; (N, 3) is shared by every camera.
        Returns:
            uv: (B, N, 2) pixel coordinates (``u`` along width); the pixel holding a point is
                ``(floor(v), floor(u))``. Points with depth <= 0 get meaningless uv: mask them.
            depth: (B, N) camera-frame z.
        """
        cam = self.world_to_camera(points)
        z = cam[..., 2]
        z_safe = torch.where(z.abs() < eps, torch.full_like(z, eps), z)
        xy = cam[..., :2] / z_safe.unsqueeze(-1)
        K = self.intrinsics.to(cam)
        u = K[:, None, 0, 0] * xy[..., 0] + K[:, None, 0, 1] * xy[..., 1] + K[:, None, 0, 2]
        v = K[:, None, 1, 1] * xy[..., 1] + K[:, None, 1, 2]
        return torch.stack([u, v], dim=-1), z

    def pixel_grid(self, device: Any = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """(H, W, 2) continuous coordinates ``(u, v)`` of the pixel centres."""
        device = device or self.device
        dtype = dtype or self.dtype
        v, u = torch.meshgrid(
            torch.arange(self.height, device=device, dtype=dtype) + 0.5,
            torch.arange(self.width, device=device, dtype=dtype) + 0.5,
            indexing="ij",
        )
        return torch.stack([u, v], dim=-1)

    def _camera_directions(self) -> torch.Tensor:
        """(B, H, W, 3) camera-frame directions with z = 1 through every pixel centre."""
        grid = self.pixel_grid()  # (H, W, 2)
        K = self.intrinsics
        fx, fy = K[:, 0, 0].view(-1, 1, 1), K[:, 1, 1].view(-1, 1, 1)
        cx, cy, s = K[:, 0, 2].view(-1, 1, 1), K[:, 1, 2].view(-1, 1, 1), K[:, 0, 1].view(-1, 1, 1)
        y = (grid[..., 1] - cy) / fy
        x = (grid[..., 0] - cx - s * y) / fx
        return torch.stack([x, y, torch.ones_like(x)], dim=-1)

    def unproject(self, depth: torch.Tensor) -> torch.Tensor:
        """Lift a z-depth map to world points at the pixel centres.

        Args:
            depth: (B, 1, H, W) or (B, H, W) camera-frame z; H, W must equal the camera size.
                Pixels of depth 0 (unknown) land on the camera centre: mask them with ``depth > 0``.
        Returns:
            (B, H, W, 3) world points.
        """
        d = _as_float_tensor("depth", depth)
        if d.ndim == 4:
            if d.shape[1] != 1:
                raise ValueError(f"depth must have shape (B, 1, H, W), got {tuple(d.shape)}")
            d = d[:, 0]
        if d.ndim != 3:
            raise ValueError(f"depth must have shape (B, 1, H, W) or (B, H, W), got {tuple(d.shape)}")
        if d.shape[-2:] != (self.height, self.width):
            raise ValueError(
                f"depth size {tuple(d.shape[-2:])} does not match the camera size "
                f"{(self.height, self.width)} (H, W)"
            )
        if d.shape[0] != len(self) and len(self) != 1:
            raise ValueError(f"depth batch {d.shape[0]} does not match {len(self)} cameras")
        check_finite("depth", d)
        d = d.to(device=self.device, dtype=self.dtype)
        cam = self._camera_directions() * d.unsqueeze(-1)  # (B, H, W, 3)
        c2w = self.c2w
        R, t = c2w[:, :3, :3], c2w[:, :3, 3]
        return torch.einsum("bij,bhwj->bhwi", R, cam) + t.view(-1, 1, 1, 3)

    def rays(self) -> Rays:
        """World-space rays through every pixel centre, unit directions."""
        c2w = self.c2w
        d_cam = self._camera_directions()
        d = torch.einsum("bij,bhwj->bhwi", c2w[:, :3, :3], d_cam)
        d = d / d.norm(dim=-1, keepdim=True)
        o = c2w[:, :3, 3].view(-1, 1, 1, 3).expand_as(d)
        return Rays(origins=o, directions=d)

    def plucker(self) -> torch.Tensor:
        """(B, 6, H, W) Plücker ray embedding ``[o x d, d]`` (moment first, as in CameraCtrl)."""
        r = self.rays()
        moment = torch.cross(r.origins, r.directions, dim=-1)
        return torch.cat([moment, r.directions], dim=-1).permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------------ internals
    def _batched_points(self, name: str, points: torch.Tensor) -> torch.Tensor:
        pts = _as_float_tensor(name, points)
        if pts.ndim == 2:
            pts = pts.unsqueeze(0)
        if pts.ndim != 3 or pts.shape[-1] != 3:
            raise ValueError(f"{name} must have shape (B, N, 3) or (N, 3), got {tuple(points.shape)}")
        if pts.shape[0] != len(self):
            if pts.shape[0] == 1:
                pts = pts.expand(len(self), -1, -1)
            elif len(self) != 1:
                raise ValueError(f"{name} batch {pts.shape[0]} does not match {len(self)} cameras")
        return pts.to(device=self.device, dtype=torch.promote_types(pts.dtype, self.dtype))


def _invert_rigid(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid (..., 4, 4) transforms: ``[R | t]^-1 = [R^T | -R^T t]``."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out
