"""Scene base class: exact ray-cast renders and surface samples of a set of analytic primitives.

Frames. A scene is built in its own *local* frame (y down, level ground, metres-like units), then
placed so that its start camera (camera 0) sits at the world origin with the identity
world-to-camera pose, OpenCV axes (DESIGN.md): ``p_world = R_wl @ p_local + t_wl``.

Truth. Colours are ``albedo(point) * shade(normal)``, with a fixed light direction and wrapped
Lambertian shading: a pure function of the surface point, the same from every camera (no specular,
no shadows, no view-dependent effect). Depth is camera z of the first hit; rays that hit nothing see
the sky colour (a function of the ray direction only, i.e. a background at infinity) and get depth 0
(unknown) and ``hit_mask`` False.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from worldstereo.camera import CameraParameters
from worldstereo.scenes.primitives import Primitive

__all__ = ["Scene", "SceneRender", "SceneView", "SurfaceSample"]


@dataclass(frozen=True)
class SceneRender:
    """Ground-truth render of ``B`` cameras.

    Attributes:
        image: (B, 3, H, W) float32 in [0, 1].
        depth: (B, 1, H, W) float32 camera z; 0 where the ray hits nothing (sky).
        hit_mask: (B, 1, H, W) bool, True where the ray hit a surface (``~hit_mask`` is the hole/sky mask).
        normals: (B, 3, H, W) float32 unit world-frame normals; 0 where nothing was hit.
        primitive_ids: (B, 1, H, W) int64 index into ``scene.primitives``; -1 where nothing was hit.
    """

    image: torch.Tensor
    depth: torch.Tensor
    hit_mask: torch.Tensor
    normals: torch.Tensor
    primitive_ids: torch.Tensor


@dataclass(frozen=True)
class SceneView:
    """The start view of a scene: image (1, 3, H, W), depth (1, 1, H, W) and its camera (B = 1)."""

    image: torch.Tensor
    depth: torch.Tensor
    camera: CameraParameters


@dataclass(frozen=True)
class SurfaceSample:
    """Points uniform by area over all scene surfaces, world frame.

    Attributes:
        points: (N, 3) float32 positions.
        colors: (N, 3) float32 shaded colours in [0, 1] (what every camera sees there).
        normals: (N, 3) float32 unit normals.
    """

    points: torch.Tensor
    colors: torch.Tensor
    normals: torch.Tensor


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Scene(ABC):
    """A deterministic procedural scene with exact ground truth.

    Subclasses set ``name``/``description``, build their primitives in :meth:`_build` (local frame,
    y down) and give the start camera's eye and target in :meth:`_start_eye_target`. The ``seed``
    changes textures and colours only; geometry (and so ``scene_depth``) is the same for every seed.

    Args:
        seed: non-negative integer seeding every texture.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    fov_y_degrees: ClassVar[float] = 60.0
    #: direction towards the light in the local frame (y down), normalised at construction
    light_direction: ClassVar[tuple[float, float, float]] = (-0.35, -1.0, -0.45)
    #: shade of a surface facing away from the light (wrapped Lambert: ambient .. 1)
    ambient: ClassVar[float] = 0.35

    def __init__(self, seed: int = 0) -> None:
        self.seed = _check_int("seed", seed, 0)
        self._texture_seeds = np.random.SeedSequence([self.seed, sum(map(ord, self.name))])
        self._n_textures = 0
        self.primitives: list[Primitive] = self._build()
        eye, target = self._start_eye_target()
        T_camera_local = CameraParameters.look_at(eye, target, up=(0.0, -1.0, 0.0)).extrinsics[0].float()
        #: (3, 3) rotation and (3,) translation of ``p_world = R @ p_local + t``
        self.R_world_local = T_camera_local[:3, :3].contiguous()
        self.t_world_local = T_camera_local[:3, 3].contiguous()
        light = torch.tensor(self.light_direction, dtype=torch.float32)
        self._light = light / light.norm()
        self._scene_depth: float | None = None

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _build(self) -> list[Primitive]:
        """The primitives in the local frame; use :meth:`texture_seed` for each texture."""

    @abstractmethod
    def _start_eye_target(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Start camera centre and a point on its optical axis, local frame."""

    def _sky(self, directions: torch.Tensor) -> torch.Tensor:
        """(N, 3) background colour for unit local ``directions`` (N, 3) that hit nothing."""
        up = (-directions[:, 1]).clamp(0, 1).unsqueeze(-1)
        horizon = directions.new_tensor([0.86, 0.9, 0.95])
        zenith = directions.new_tensor([0.32, 0.52, 0.85])
        return horizon + (zenith - horizon) * up.sqrt()

    def texture_seed(self) -> int:
        """The next texture seed of this scene (deterministic given ``seed`` and call order)."""
        self._n_textures += 1
        child = np.random.SeedSequence(self._texture_seeds.entropy, spawn_key=(self._n_textures,))
        return int(child.generate_state(1)[0])

    # ------------------------------------------------------------------ frames
    @property
    def up(self) -> torch.Tensor:
        """(3,) world-frame unit "up" (against gravity) direction, for viewers."""
        return self.R_world_local @ torch.tensor([0.0, -1.0, 0.0])

    def local_to_world(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) local-frame points -> (N, 3) world points."""
        return points @ self.R_world_local.to(points).T + self.t_world_local.to(points)

    # ------------------------------------------------------------------ cameras and views
    def start_camera(self, width: int = 512, height: int = 384) -> CameraParameters:
        """Camera 0: identity world-to-camera at the origin, ``fov_y_degrees`` vertical FOV (B = 1)."""
        return CameraParameters.from_fov(self.fov_y_degrees, width, height, degrees=True)

    def start_view(self, width: int = 512, height: int = 384, antialias: int = 2) -> SceneView:
        """Image (anti-aliased as the oracle renders it), depth and camera of the start view."""
        camera = self.start_camera(width, height)
        out = self.render(camera, antialias=antialias)
        return SceneView(image=out.image, depth=out.depth, camera=camera)

    @property
    def scene_depth(self) -> float:
        """Median depth of the start view's surface pixels (scale for camera-path presets)."""
        if self._scene_depth is None:
            d = self.render(self.start_camera(128, 96)).depth
            self._scene_depth = float(d[d > 0].median())
        return self._scene_depth

    # ------------------------------------------------------------------ rendering
    def render(self, cameras: CameraParameters, chunk_rays: int = 1 << 17, antialias: int = 1) -> SceneRender:
        """Exact render of every camera (any batch size), ``chunk_rays`` rays at a time.

        Args:
            cameras: B cameras sharing one image size (world frame of this scene).
            antialias: ``s > 1`` averages the colour over an ``s x s`` grid of rays per pixel (the
                pixel integrates its area, as a real camera does; no texture aliasing). Depth,
                normals and ids always come from the ray through the pixel centre.
        Returns:
            :class:`SceneRender` on ``cameras.device``.
        """
        if not isinstance(cameras, CameraParameters):
            raise ValueError(f"cameras must be CameraParameters, got {type(cameras).__name__}")
        antialias = _check_int("antialias", antialias, 1)
        out = self._render_centres(cameras, chunk_rays)
        if antialias == 1:
            return out
        big = self._render_centres(cameras.resized(cameras.width * antialias, cameras.height * antialias), chunk_rays)
        image = torch.nn.functional.avg_pool2d(big.image, antialias)
        return SceneRender(image=image, depth=out.depth, hit_mask=out.hit_mask, normals=out.normals,
                           primitive_ids=out.primitive_ids)

    def _render_centres(self, cameras: CameraParameters, chunk_rays: int) -> SceneRender:
        """One ray per pixel centre (see :meth:`render`)."""
        chunk_rays = _check_int("chunk_rays", chunk_rays, 1)
        B, H, W = len(cameras), cameras.height, cameras.width
        hw = H * W
        per_group = max(1, chunk_rays // hw)
        colors, depths, normals, ids = [], [], [], []
        R = self.R_world_local.to(cameras.device)
        t = self.t_world_local.to(cameras.device)
        for g in range(0, B, per_group):
            cams = cameras[g:g + per_group]
            rays = cams.rays()
            o_w = rays.origins.reshape(-1, 3).float()
            d_w = rays.directions.reshape(-1, 3).float()
            z_axis = cams.extrinsics[:, 2, :3].float()  # (b, 3) camera z axis in world
            # cosine between each ray and its camera's optical axis: depth = t * cos
            cos = torch.bmm(d_w.reshape(len(cams), hw, 3), z_axis.unsqueeze(-1)).reshape(-1)
            o_l, d_l = (o_w - t) @ R, d_w @ R
            for s in range(0, o_w.shape[0], chunk_rays):
                sl = slice(s, s + chunk_rays)
                t_hit, col, nrm_l, pid = self._trace(o_l[sl], d_l[sl])
                hit = pid >= 0
                depth = torch.where(hit, t_hit * cos[sl], torch.zeros_like(t_hit))
                colors.append(col)
                depths.append(depth)
                normals.append(nrm_l @ R.T)
                ids.append(pid)

        def image(parts: list[torch.Tensor], c: int) -> torch.Tensor:
            return torch.cat(parts).reshape(B, H, W, c).permute(0, 3, 1, 2).contiguous()

        pid = image([p.unsqueeze(-1) for p in ids], 1)
        return SceneRender(
            image=image(colors, 3),
            depth=image([d.unsqueeze(-1) for d in depths], 1),
            hit_mask=pid >= 0,
            normals=image(normals, 3),
            primitive_ids=pid,
        )

    def trace(self, origins: torch.Tensor, directions: torch.Tensor, chunk_rays: int = 1 << 17) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact hits of arbitrary world-frame rays (for cameras that are not pinholes, e.g. panoramas).

        Args:
            origins: (N, 3) ray origins, world frame of this scene.
            directions: (N, 3) unit ray directions, world frame.
        Returns:
            distance along each ray to its hit (N,) (0 where the ray hits nothing: sky), and the
            shaded colour (N, 3) in [0, 1] (the sky's colour on a miss).
        """
        R = self.R_world_local.to(origins)
        t = self.t_world_local.to(origins)
        dists, colors = [], []
        for s in range(0, origins.shape[0], max(1, int(chunk_rays))):
            o_l = (origins[s:s + chunk_rays].float() - t) @ R
            d_l = directions[s:s + chunk_rays].float() @ R
            t_hit, col, _, pid = self._trace(o_l, d_l)
            dists.append(torch.where(pid >= 0, t_hit, torch.zeros_like(t_hit)))
            colors.append(col)
        return torch.cat(dists), torch.cat(colors)

    def _shade(self, albedo: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
        lam = normals @ self._light.to(normals)
        shade = self.ambient + (1.0 - self.ambient) * 0.5 * (1.0 + lam)
        return (albedo * shade.unsqueeze(-1)).clamp(0.0, 1.0)

    @staticmethod
    def _intersect_culled(prim: Primitive, o: torch.Tensor, d: torch.Tensor, od: torch.Tensor,
                          oo: torch.Tensor) -> torch.Tensor:
        """``prim.intersect`` run only on the rays that pass through its bounding sphere.

        ``od`` (N,) and ``oo`` (N,) are the per-ray dot products ``o . d`` and ``o . o``.
        """
        bounds = prim.bounding_sphere
        if bounds is None:
            return prim.intersect(o, d)
        center, radius = bounds
        c = center.to(o)
        b = d @ c - od  # (c - o) . d
        dist2 = (c @ c) - 2.0 * (o @ c) + oo - b * b  # squared distance of c from the ray's line
        near = (dist2 <= radius * radius * 1.0001 + 1e-4) & (b > -radius - 1e-3)
        idx = torch.nonzero(near).squeeze(1)
        if idx.numel() > 0.5 * o.shape[0]:
            return prim.intersect(o, d)
        t = torch.full((o.shape[0],), float("inf"), dtype=o.dtype, device=o.device)
        if idx.numel() > 0:
            t[idx] = prim.intersect(o[idx], d[idx])
        return t

    def _trace(self, o: torch.Tensor, d: torch.Tensor):
        """Nearest hit of local rays: (t (N,), colour (N, 3), local normal (N, 3), primitive id (N,))."""
        best = torch.full((o.shape[0],), float("inf"), dtype=o.dtype, device=o.device)
        pid = torch.full((o.shape[0],), -1, dtype=torch.long, device=o.device)
        od, oo = (o * d).sum(-1), (o * o).sum(-1)
        for i, prim in enumerate(self.primitives):
            t = self._intersect_culled(prim, o, d, od, oo)
            closer = t < best
            best = torch.where(closer, t, best)
            pid = torch.where(closer, torch.full_like(pid, i), pid)
        color = torch.zeros_like(o)
        normal = torch.zeros_like(o)
        miss = pid < 0
        if bool(miss.any()):
            color[miss] = self._sky(d[miss]).clamp(0.0, 1.0)
        for i, prim in enumerate(self.primitives):
            m = pid == i
            if not bool(m.any()):
                continue
            p = o[m] + best[m].unsqueeze(-1) * d[m]
            surf = prim.surface(p)
            color[m] = self._shade(prim.texture(surf), surf.normals)
            normal[m] = surf.normals
        return best, color, normal, pid

    # ------------------------------------------------------------------ ground-truth surface
    def sample_surface(self, num_points: int, seed: int = 0) -> SurfaceSample:
        """``num_points`` points uniform by area over every primitive's surface, with their colours.

        Args:
            num_points: number of points (>= 1).
            seed: sampling seed (independent of the scene's texture ``seed``).
        """
        num_points = _check_int("num_points", num_points, 1)
        gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
        areas = torch.tensor([p.area for p in self.primitives], dtype=torch.float64)
        which = torch.multinomial(areas, num_points, replacement=True, generator=gen)
        counts = torch.bincount(which, minlength=len(self.primitives)).tolist()
        pts, cols, nrms = [], [], []
        for prim, n in zip(self.primitives, counts, strict=True):
            if n == 0:
                continue
            p = prim.sample(n, gen)
            surf = prim.surface(p)
            pts.append(p)
            cols.append(self._shade(prim.texture(surf), surf.normals))
            nrms.append(surf.normals)
        order = torch.randperm(num_points, generator=gen)
        points = self.local_to_world(torch.cat(pts))[order]
        normals = (torch.cat(nrms) @ self.R_world_local.T)[order]
        return SurfaceSample(points=points.float().contiguous(), colors=torch.cat(cols)[order].contiguous(),
                             normals=normals.float().contiguous())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, seed={self.seed}, primitives={len(self.primitives)})"
