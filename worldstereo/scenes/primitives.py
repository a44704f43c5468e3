"""Analytic ray-traceable primitives of the ground-truth scenes.

Every primitive lives in its scene's *local* frame (gravity along ``+y``: y points down, as OpenCV
cameras held level) and offers:

* ``intersect(origins (N, 3), directions (N, 3) unit) -> t (N,)``: the ray parameter of the first
  surface crossing with ``t > T_MIN``, ``inf`` where the ray misses (a ray starting inside a solid
  returns its exit point, so boxes and spheres also work seen from inside);
* ``surface(points (N, 3)) -> SurfacePoints``: normals, metric ``uv`` and normalised ``st`` surface
  coordinates and the face index of points on the surface;
* ``area`` and ``sample(n, generator) -> (n, 3)`` points uniform by area over the whole surface.

Computation is float32 and vectorised over rays; parameters are moved to the rays' device.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from worldstereo.scenes.textures import SurfacePoints, Texture

__all__ = [
    "Box",
    "Cylinder",
    "Ellipsoid",
    "HeightField",
    "Primitive",
    "Quad",
    "WaveTerrain",
    "T_MIN",
    "yaw_rotation",
]

T_MIN = 1e-4  # smallest accepted ray parameter (scene units)
_INF = float("inf")


def _vec(v: Sequence[float] | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32).reshape(3)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"primitive parameters must be finite, got {t.tolist()}")
    return t


def yaw_rotation(angle: float) -> torch.Tensor:
    """(3, 3) rotation by ``angle`` radians about the local vertical (y) axis."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float32)


def _safe_inverse(d: torch.Tensor) -> torch.Tensor:
    """1 / d with exact zeros replaced by 1e-30 (keeps the slab test NaN-free)."""
    return torch.where(d == 0, 1e-30, d).reciprocal()


def _slab(o: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit parameters (N,) of rays through the axis-aligned box ``[lo, hi]``."""
    inv = _safe_inverse(d)
    t1, t2 = (lo - o) * inv, (hi - o) * inv
    return torch.minimum(t1, t2).amax(-1), torch.maximum(t1, t2).amin(-1)


def _first_positive(t_near: torch.Tensor, t_far: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    t = torch.where(t_near > T_MIN, t_near, t_far)
    return torch.where(hit & (t > T_MIN), t, torch.full_like(t, _INF))


def _uniform(n: int, generator: torch.Generator, dims: int = 1) -> torch.Tensor:
    return torch.rand(n, dims, generator=generator, dtype=torch.float32)


class Primitive(ABC):
    """One textured surface in a scene's local frame."""

    def __init__(self, texture: Texture) -> None:
        self.texture = texture

    @abstractmethod
    def intersect(self, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """(N,) first hit parameter ``t > T_MIN`` along unit ``directions``; ``inf`` where missed."""

    @property
    def bounding_sphere(self) -> tuple[torch.Tensor, float] | None:
        """(centre (3,), radius) enclosing the surface, for ray culling; None if unbounded."""
        return None

    @abstractmethod
    def surface(self, points: torch.Tensor) -> SurfacePoints:
        """Normals and surface coordinates of ``points`` (N, 3) lying on this surface."""

    @property
    @abstractmethod
    def area(self) -> float:
        """Total surface area (scene units squared)."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 3) points uniform by area over the surface."""


class Quad(Primitive):
    """A rectangle ``center + a * axis_u + b * axis_v`` with ``|a| <= half_u``, ``|b| <= half_v``.

    ``axis_u`` and ``axis_v`` must be orthonormal; the normal is ``axis_u x axis_v`` (choose the order
    so that it faces the viewer: it sets the shading). The rectangle is hit from both sides.
    """

    def __init__(self, center, axis_u, axis_v, half_u: float, half_v: float, texture: Texture) -> None:
        super().__init__(texture)
        self.center, self.axis_u, self.axis_v = _vec(center), _vec(axis_u), _vec(axis_v)
        if abs(float(self.axis_u @ self.axis_v)) > 1e-5 or abs(float(self.axis_u.norm()) - 1) > 1e-5 \
                or abs(float(self.axis_v.norm()) - 1) > 1e-5:
            raise ValueError("axis_u and axis_v must be orthonormal")
        if half_u <= 0 or half_v <= 0:
            raise ValueError(f"half_u and half_v must be positive, got {half_u}, {half_v}")
        self.normal = torch.linalg.cross(self.axis_u, self.axis_v)
        self.half_u, self.half_v = float(half_u), float(half_v)

    def intersect(self, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        c, n = self.center.to(origins), self.normal.to(origins)
        denom = directions @ n
        safe = torch.where(denom.abs() < 1e-12, torch.full_like(denom, 1e-12), denom)
        t = ((c - origins) @ n) / safe
        rel = origins + t.unsqueeze(-1) * directions - c
        a, b = rel @ self.axis_u.to(origins), rel @ self.axis_v.to(origins)
        hit = (denom.abs() >= 1e-12) & (t > T_MIN) & (a.abs() <= self.half_u) & (b.abs() <= self.half_v)
        return torch.where(hit, t, torch.full_like(t, _INF))

    def surface(self, points: torch.Tensor) -> SurfacePoints:
        rel = points - self.center.to(points)
        uv = torch.stack([rel @ self.axis_u.to(points), rel @ self.axis_v.to(points)], -1)
        st = (uv / uv.new_tensor([2 * self.half_u, 2 * self.half_v]) + 0.5).clamp(0, 1)
        normals = self.normal.to(points).expand_as(points)
        return SurfacePoints(points, normals, uv, st, torch.zeros(len(points), dtype=torch.long, device=points.device))

    @property
    def area(self) -> float:
        return 4.0 * self.half_u * self.half_v

    @property
    def bounding_sphere(self) -> tuple[torch.Tensor, float]:
        return self.center, math.hypot(self.half_u, self.half_v)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        ab = _uniform(n, generator, 2) * 2.0 - 1.0
        return (self.center + ab[:, :1] * self.half_u * self.axis_u + ab[:, 1:] * self.half_v * self.axis_v)


class Box(Primitive):
    """A solid box: ``center``, ``half`` extents along its axes, ``rotation`` (3, 3) whose columns are the
    box axes in the local frame. Normals point outwards."""

    # per axis: indices (u, v) of the in-face coordinates
    _FACE_UV = ((2, 1), (0, 2), (0, 1))

    def __init__(self, center, half, texture: Texture, rotation: torch.Tensor | None = None) -> None:
        super().__init__(texture)
        self.center, self.half = _vec(center), _vec(half)
        if bool((self.half <= 0).any()):
            raise ValueError(f"half extents must be positive, got {self.half.tolist()}")
        self.rotation = torch.eye(3) if rotation is None else torch.as_tensor(rotation, dtype=torch.float32)
        if self.rotation.shape != (3, 3):
            raise ValueError(f"rotation must have shape (3, 3), got {tuple(self.rotation.shape)}")
        self._axis_aligned = bool(torch.equal(self.rotation, torch.eye(3)))

    def _to_box(self, v: torch.Tensor) -> torch.Tensor:
        return v if self._axis_aligned else v @ self.rotation.to(v)

    @property
    def bounding_sphere(self) -> tuple[torch.Tensor, float]:
        return self.center, float(self.half.norm())

    def intersect(self, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        o = self._to_box(origins - self.center.to(origins))
        d = self._to_box(directions)
        h = self.half.to(origins)
        t_near, t_far = _slab(o, d, -h, h)
        return _first_positive(t_near, t_far, t_near <= t_far)

    def surface(self, points: torch.Tensor) -> SurfacePoints:
        pb = self._to_box(points - self.center.to(points))
        h = self.half.to(points)
        r = pb / h
        axis = r.abs().argmax(-1)
        sign = torch.sign(r.gather(1, axis[:, None]).squeeze(1))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        n_box = torch.zeros_like(pb).scatter_(1, axis[:, None], sign[:, None])
        normals = n_box @ self.rotation.to(points).T
        iu = torch.tensor([u for u, _ in self._FACE_UV], device=points.device)[axis]
        iv = torch.tensor([v for _, v in self._FACE_UV], device=points.device)[axis]
        u, v = pb.gather(1, iu[:, None]).squeeze(1), pb.gather(1, iv[:, None]).squeeze(1)
        # mirror so that letters read left-to-right seen from outside (x-faces: +z right; z-faces: -x right)
        u = torch.where(axis == 0, u * sign, torch.where(axis == 2, -u * sign, u))
        hu, hv = h[iu], h[iv]
        uv = torch.stack([u, v], -1)
        st = torch.stack([u / (2 * hu) + 0.5, v / (2 * hv) + 0.5], -1).clamp(0, 1)
        face = 2 * axis + (sign > 0).long()
        # distinct texture regions per face
        uv = uv + face.unsqueeze(-1).to(uv) * 3.7
        return SurfacePoints(points, normals, uv, st, face)

    @property
    def area(self) -> float:
        hx, hy, hz = self.half.tolist()
        return 8.0 * (hx * hy + hy * hz + hx * hz)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        hx, hy, hz = self.half.tolist()
        face_area = torch.tensor([hy * hz, hy * hz, hx * hz, hx * hz, hx * hy, hx * hy])
        face = torch.multinomial(face_area, n, replacement=True, generator=generator)
        pb = (_uniform(n, generator, 3) * 2.0 - 1.0) * self.half
        axis = face // 2
        sign = (face % 2).float() * 2.0 - 1.0
        pb[torch.arange(n), axis] = sign * self.half[axis]
        return self.center + pb @ self.rotation.T


class Ellipsoid(Primitive):
    """An axis-aligned ellipsoid (a sphere when all ``radii`` are equal); outward normals."""

    def __init__(self, center, radii, texture: Texture) -> None:
        super().__init__(texture)
        self.center = _vec(center)
        r = torch.as_tensor(radii, dtype=torch.float32).reshape(-1)
        self.radii = r.expand(3).clone() if r.numel() == 1 else _vec(r)
        if bool((self.radii <= 0).any()):
            raise ValueError(f"radii must be positive, got {self.radii.tolist()}")

    @property
    def bounding_sphere(self) -> tuple[torch.Tensor, float]:
        return self.center, float(self.radii.max())

    def intersect(self, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        r = self.radii.to(origins)
        o = (origins - self.center.to(origins)) / r
        d = directions / r
        a = (d * d).sum(-1)
        tc = -(o * d).sum(-1) / a  # closest approach to the centre (precise near silhouettes)
        p = o + tc.unsqueeze(-1) * d
        rest = (1.0 - (p * p).sum(-1)) / a
        sq = rest.clamp(min=0).sqrt()
        return _first_positive(tc - sq, tc + sq, rest >= 0)

    def surface(self, points: torch.Tensor) -> SurfacePoints:
        r = self.radii.to(points)
        q = (points - self.center.to(points)) / r
        normals = q / r
        normals = normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        qn = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        lon = torch.atan2(qn[:, 2], qn[:, 0])
        lat = torch.asin((-qn[:, 1]).clamp(-1, 1))
        mean_r = float(self.radii.mean())
        uv = torch.stack([lon * mean_r, lat * mean_r], -1)
        st = torch.stack([lon / (2 * math.pi) + 0.5, 0.5 - lat / math.pi], -1)
        return SurfacePoints(points, normals, uv, st, torch.zeros(len(points), dtype=torch.long, device=points.device))

    @property
    def area(self) -> float:
        p = 1.6075  # Knud Thomsen's approximation (exact for a sphere)
        a, b, c = (float(x) ** p for x in self.radii)
        return 4.0 * math.pi * ((a * b + a * c + b * c) / 3.0) ** (1.0 / p)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # uniform on the unit sphere, mapped by diag(radii), accepted with the area-element ratio
        out, have = [], 0
        inv = 1.0 / self.radii
        bound = float(inv.max())
        while have < n:
            m = 2 * (n - have) + 16
            u = torch.randn(m, 3, generator=generator)
            u = u / u.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            keep = _uniform(m, generator).squeeze(1) * bound <= (u * inv).norm(dim=-1)
            out.append(u[keep])
            have += int(keep.sum())
        u = torch.cat(out)[:n]
        return self.center + u * self.radii


class Cylinder(Primitive):
    """A closed vertical cylinder (axis along local y) of ``radius`` and ``half_height`` about ``center``."""

    def __init__(self, center, radius: float, half_height: float, texture: Texture) -> None:
        super().__init__(texture)
        self.center = _vec(center)
        if radius <= 0 or half_height <= 0:
            raise ValueError(f"radius and half_height must be positive, got {radius}, {half_height}")
        self.radius, self.half_height = float(radius), float(half_height)

    @property
    def bounding_sphere(self) -> tuple[torch.Tensor, float]:
        return self.center, math.hypot(self.radius, self.half_height)

    def intersect(self, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        o = origins - self.center.to(origins)
        d = directions
        r, h = self.radius, self.half_height
        a = d[:, 0] ** 2 + d[:, 2] ** 2
        b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
        c = o[:, 0] ** 2 + o[:, 2] ** 2 - r * r
        disc = b * b - a * c
        sq = disc.clamp(min=0).sqrt()
        a_safe = torch.where(a < 1e-12, torch.full_like(a, 1e-12), a)
        inf = torch.full_like(a, _INF)
        best = inf
        for ts in ((-b - sq) / a_safe, (-b + sq) / a_safe):
            y = o[:, 1] + ts * d[:, 1]
            ok = (disc >= 0) & (a >= 1e-12) & (ts > T_MIN) & (y.abs() <= h)
            best = torch.minimum(best, torch.where(ok, ts, inf))
        dy = torch.where(d[:, 1].abs() < 1e-12, torch.full_like(a, 1e-12), d[:, 1])
        for y_cap in (-h, h):
            ts = (y_cap - o[:, 1]) / dy
            x, z = o[:, 0] + ts * d[:, 0], o[:, 2] + ts * d[:, 2]
            ok = (ts > T_MIN) & (x * x + z * z <= r * r)
            best = torch.minimum(best, torch.where(ok, ts, inf))
        return best

    def surface(self, points: torch.Tensor) -> SurfacePoints:
        rel = points - self.center.to(points)
        r, h = self.radius, self.half_height
        radial = torch.sqrt(rel[:, 0] ** 2 + rel[:, 2] ** 2)
        on_cap = (rel[:, 1].abs() - h).abs() < (radial - r).abs()
        top = rel[:, 1] < 0  # y down: the top cap faces -y
        side_n = torch.stack([rel[:, 0], torch.zeros_like(radial), rel[:, 2]], -1) / radial.clamp(min=1e-12)[:, None]
        cap_n = torch.zeros_like(rel)
        cap_n[:, 1] = torch.where(top, -1.0, 1.0)
        normals = torch.where(on_cap[:, None], cap_n, side_n)
        ang = torch.atan2(rel[:, 2], rel[:, 0])
        side_uv = torch.stack([ang * r, rel[:, 1]], -1)
        side_st = torch.stack([ang / (2 * math.pi) + 0.5, (rel[:, 1] + h) / (2 * h)], -1)
        cap_uv = rel[:, [0, 2]] + 5.0
        cap_st = rel[:, [0, 2]] / (2 * r) + 0.5
        uv = torch.where(on_cap[:, None], cap_uv, side_uv)
        st = torch.where(on_cap[:, None], cap_st, side_st).clamp(0, 1)
        face = torch.where(on_cap, torch.where(top, 1, 2), 0).long()
        return SurfacePoints(points, normals, uv, st, face)

    @property
    def area(self) -> float:
        return 2.0 * math.pi * self.radius * (2.0 * self.half_height + self.radius)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        r, h = self.radius, self.half_height
        parts = torch.tensor([2.0 * h, 0.5 * r, 0.5 * r])  # side : top : bottom areas / (2 pi r)
        part = torch.multinomial(parts, n, replacement=True, generator=generator)
        u = _uniform(n, generator, 2)
        ang = u[:, 0] * 2.0 * math.pi
        rad = torch.where(part == 0, torch.full_like(ang, r), r * u[:, 1].sqrt())
        y = torch.where(part == 0, (u[:, 1] * 2.0 - 1.0) * h, torch.where(part == 1, -h, h))
        ang = torch.where(part == 0, ang, _uniform(n, generator).squeeze(1) * 2.0 * math.pi)
        return self.center + torch.stack([rad * torch.cos(ang), y, rad * torch.sin(ang)], -1)


@dataclass(frozen=True)
class WaveTerrain:
    """A smooth ground height ``y = base - H(x, z)`` (y down) with
    ``H = bowl_x * x^2 + bowl_z * (z - z0)^2 + sum_k amp_k * sin(kx_k * x + kz_k * z + phase_k)``.

    Attributes:
        base: ground level where ``H = 0``.
        bowl_x, bowl_z, z0: the valley's curvature and centre along z.
        waves: ``(amp, kx, kz, phase)`` plane waves.
    """

    base: float
    bowl_x: float
    bowl_z: float
    z0: float
    waves: tuple[tuple[float, float, float, float], ...]

    def height(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Ground y (local frame, y down) at (x, z), any matching shapes."""
        h = self.bowl_x * x * x + self.bowl_z * (z - self.z0) ** 2
        for amp, kx, kz, ph in self.waves:
            h = h + amp * torch.sin(kx * x + kz * z + ph)
        return self.base - h

    def along_rays(self, origins: torch.Tensor, directions: torch.Tensor):
        """``f(t)``: height of rays ``o + t d`` above the ground (> 0 above), ``t`` (M, K) for M rays.

        Expands ``height(x(t), z(t)) - y(t)`` into a per-ray quadratic plus per-ray wave phases
        ``a + b t``, so each evaluation costs a few fused operations per wave.
        """
        o, d = origins, directions
        ox, oy, oz = o[:, 0:1], o[:, 1:2], o[:, 2:3] - self.z0
        dx, dy, dz = d[:, 0:1], d[:, 1:2], d[:, 2:3]
        c0 = self.base - oy - self.bowl_x * ox * ox - self.bowl_z * oz * oz
        c1 = -2.0 * (self.bowl_x * ox * dx + self.bowl_z * oz * dz) - dy
        c2 = -(self.bowl_x * dx * dx + self.bowl_z * dz * dz)
        phases = [(amp, kx * o[:, 0:1] + kz * o[:, 2:3] + ph, kx * dx + kz * dz) for amp, kx, kz, ph in self.waves]

        def f(t: torch.Tensor) -> torch.Tensor:
            out = torch.addcmul(c0, t, torch.addcmul(c1, t, c2))
            for amp, a, b in phases:
                out.sub_(torch.addcmul(a, t, b).sin_(), alpha=amp)
            return out

        return f

    def gradient(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dy/dx, dy/dz) of the ground y."""
        gx = 2.0 * self.bowl_x * x
        gz = 2.0 * self.bowl_z * (z - self.z0)
        for amp, kx, kz, ph in self.waves:
            c = amp * torch.cos(kx * x + kz * z + ph)
            gx, gz = gx + kx * c, gz + kz * c
        return -gx, -gz


class HeightField(Primitive):
    """A ground surface ``y = terrain.height(x, z)`` over ``x_range x z_range``, hit from above.

    Rays are marched with ``steps`` samples (denser near the entry point) through the domain's
    bounding box and the first sign change is refined by ``refine`` bisection steps, then two
    false-position steps: the returned point is within ~1e-5 units of the surface for the smooth
    terrains used here. Normals point up (``-y``).
    """

    def __init__(self, terrain: WaveTerrain, x_range: tuple[float, float], z_range: tuple[float, float],
                 texture: Texture, steps: int = 24, refine: int = 6, chunk: int = 16384) -> None:
        super().__init__(texture)
        self.terrain, self.x_range, self.z_range = terrain, tuple(map(float, x_range)), tuple(map(float, z_range))
        if self.x_range[0] >= self.x_range[1] or self.z_range[0] >= self.z_range[1]:
            raise ValueError(f"x_range and z_range must be increasing, got {x_range}, {z_range}")
        self.steps, self.refine, self.chunk = steps, refine, chunk
        gx, gz = torch.meshgrid(torch.linspace(*self.x_range, 384), torch.linspace(*self.z_range, 384), indexing="ij")
        y = terrain.height(gx, gz)
        dx, dz = terrain.gradient(gx, gz)
        element = torch.sqrt(1.0 + dx * dx + dz * dz)
        self._y_lo, self._y_hi = float(y.min()) - 0.5, float(y.max()) + 0.5
        self._element_max = float(element.max()) * 1.05
        domain = (self.x_range[1] - self.x_range[0]) * (self.z_range[1] - self.z_range[0])
        self._area = float(element.mean()) * domain
        self._s = torch.linspace(0.0, 1.0, steps + 1) ** 1.6

    def intersect(self, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        lo = origins.new_tensor([self.x_range[0], self._y_lo, self.z_range[0]])
        hi = origins.new_tensor([self.x_range[1], self._y_hi, self.z_range[1]])
        t_in, t_out = _slab(origins, directions, lo, hi)
        t_in = t_in.clamp(min=T_MIN)
        result = torch.full_like(t_in, _INF)
        idx = torch.nonzero(t_out > t_in).squeeze(1)
        s = self._s.to(origins)
        for start in range(0, idx.numel(), self.chunk):
            sel = idx[start:start + self.chunk]
            o, d, a, b = origins[sel], directions[sel], t_in[sel], t_out[sel]
            ts = a[:, None] + (b - a)[:, None] * s  # (M, S + 1)
            f = self.terrain.along_rays(o, d)
            below = f(ts) <= 0
            k = below.to(torch.uint8).argmax(dim=1)
            ok = below.any(dim=1) & (k > 0)
            if not bool(ok.any()):
                continue
            o, d, ts, k, sel = o[ok], d[ok], ts[ok], k[ok], sel[ok]
            f = self.terrain.along_rays(o, d)
            t_lo = ts.gather(1, (k - 1)[:, None])
            t_hi = ts.gather(1, k[:, None])
            for _ in range(self.refine):  # bisection: f(t_lo) > 0 >= f(t_hi)
                mid = 0.5 * (t_lo + t_hi)
                above = f(mid) > 0
                t_lo = torch.where(above, mid, t_lo)
                t_hi = torch.where(above, t_hi, mid)
            f_lo, f_hi = f(t_lo), f(t_hi)
            for _ in range(2):  # false position on the small, nearly linear bracket
                w = (f_lo / (f_lo - f_hi).clamp(min=1e-12)).clamp(0, 1)
                t_new = t_lo + w * (t_hi - t_lo)
                f_new = f(t_new)
                above = f_new > 0
                t_lo, f_lo = torch.where(above, t_new, t_lo), torch.where(above, f_new, f_lo)
                t_hi, f_hi = torch.where(above, t_hi, t_new), torch.where(above, f_hi, f_new)
            result[sel] = torch.where(f_lo < -f_hi, t_lo, t_hi).squeeze(1)
        return result

    def surface(self, points: torch.Tensor) -> SurfacePoints:
        x, z = points[:, 0], points[:, 2]
        gx, gz = self.terrain.gradient(x, z)
        normals = torch.stack([gx, -torch.ones_like(gx), gz], -1)
        normals = normals / normals.norm(dim=-1, keepdim=True)
        uv = torch.stack([x, z], -1)
        st = torch.stack([(x - self.x_range[0]) / (self.x_range[1] - self.x_range[0]),
                          (z - self.z_range[0]) / (self.z_range[1] - self.z_range[0])], -1).clamp(0, 1)
        return SurfacePoints(points, normals, uv, st, torch.zeros(len(points), dtype=torch.long, device=points.device))

    @property
    def area(self) -> float:
        return self._area

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        out, have = [], 0
        (x0, x1), (z0, z1) = self.x_range, self.z_range
        while have < n:
            m = 2 * (n - have) + 16
            u = _uniform(m, generator, 3)
            x, z = x0 + u[:, 0] * (x1 - x0), z0 + u[:, 1] * (z1 - z0)
            gx, gz = self.terrain.gradient(x, z)
            keep = u[:, 2] * self._element_max <= torch.sqrt(1.0 + gx * gx + gz * gz)
            out.append(torch.stack([x, self.terrain.height(x, z), z], -1)[keep])
            have += int(keep.sum())
        return torch.cat(out)[:n]
