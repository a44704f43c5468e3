"""Seeded procedural textures for the ground-truth scenes.

A texture is a pure function of a surface point: it maps :class:`SurfacePoints` (points, normals
and surface coordinates in the scene's *local* frame) to an albedo ``(N, 3)`` in ``[0, 1]``. It never
sees the viewing ray, so the same surface point has the same colour from every camera.

Every texture draws its random tables and colour jitter from its own ``seed``: the same seed gives
bit-identical colours, another seed another pattern. Patterns carry detail at the centimetre scale
in both surface directions (bricks, planks with grain, stripes, glyphs, value noise), so a
one-pixel misalignment of a rendered view changes its PSNR visibly.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Bark",
    "Bricks",
    "Checker",
    "Foliage",
    "Grass",
    "Letters",
    "LatticeNoise",
    "Painting",
    "Planks",
    "Rock",
    "SolidNoise",
    "Stripes",
    "SurfacePoints",
    "Texture",
    "Tiles",
    "Wallpaper",
]

Color = Sequence[float]


@dataclass(frozen=True)
class SurfacePoints:
    """Points on one primitive, in the scene's local frame.

    Attributes:
        points: (N, 3) positions.
        normals: (N, 3) unit outward normals (as the primitive defines them).
        uv: (N, 2) metric surface coordinates (scene units) along the surface.
        st: (N, 2) the same coordinates normalised to ``[0, 1]`` over the face.
        face: (N,) int64 face index (box faces 0..5 = 2 * axis + (sign > 0); cylinder 0 side,
            1 top, 2 bottom; 0 elsewhere).
    """

    points: torch.Tensor
    normals: torch.Tensor
    uv: torch.Tensor
    st: torch.Tensor
    face: torch.Tensor


class LatticeNoise:
    """Seeded 2-D value noise on an integer lattice (period ``TABLE`` cells in each direction).

    Args:
        seed: seeds the permutation and value tables.
    """

    TABLE = 1024

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._perm = torch.from_numpy(rng.permutation(self.TABLE)).long()
        self._values = torch.from_numpy(rng.random(self.TABLE, dtype=np.float32))

    def hash(self, ix: torch.Tensor, iy: torch.Tensor, salt: int = 0) -> torch.Tensor:
        """Uniform ``[0, 1)`` value per integer cell: ``ix, iy`` (N,) int64 -> (N,) float32."""
        perm, mask = self._perm.to(ix.device), self.TABLE - 1  # TABLE is a power of two: & == mod
        h = torch.take(perm, torch.take(perm, (ix + 131 * salt) & mask) + iy & mask)
        return torch.take(self._values.to(ix.device), h)

    def noise(self, uv: torch.Tensor) -> torch.Tensor:
        """Smooth value noise in ``[0, 1]``: ``uv`` (N, 2) lattice coordinates -> (N,)."""
        x, y = uv[:, 0], uv[:, 1]
        x0, y0 = torch.floor(x), torch.floor(y)
        fx, fy = x - x0, y - y0
        sx, sy = fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy)
        ix, iy = x0.long(), y0.long()
        v00, v10 = self.hash(ix, iy), self.hash(ix + 1, iy)
        v01, v11 = self.hash(ix, iy + 1), self.hash(ix + 1, iy + 1)
        a = v00 + (v10 - v00) * sx
        b = v01 + (v11 - v01) * sx
        return a + (b - a) * sy

    def fbm(self, uv: torch.Tensor, octaves: int = 4, gain: float = 0.5) -> torch.Tensor:
        """Fractal sum of ``octaves`` noise layers (frequency doubling), normalised to ``[0, 1]``."""
        total = torch.zeros_like(uv[:, 0])
        amp, norm, freq = 1.0, 0.0, 1.0
        for k in range(octaves):
            total = total + amp * self.noise(uv * freq + 17.3 * k)
            norm += amp
            amp *= gain
            freq *= 2.0
        return total / norm


def _color(c: Color, ref: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(c, dtype=ref.dtype, device=ref.device).reshape(1, 3)


def _mix(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Blend colours ``a``, ``b`` ((1, 3) or (N, 3)) by ``t`` (N,)."""
    return a + (b - a) * t.unsqueeze(-1)


class Texture(ABC):
    """Base class: ``texture(surface) -> (N, 3)`` albedo in ``[0, 1]``; deterministic given ``seed``."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.noise = LatticeNoise(int(self.rng.integers(0, 2**31 - 1)))

    def jitter(self, color: Color, amount: float = 0.06) -> tuple[float, float, float]:
        """``color`` moved by a seeded offset of about ``amount`` per channel (clipped to [0, 1])."""
        c = np.clip(np.asarray(color, dtype=np.float64) + self.rng.normal(0.0, amount, 3), 0.0, 1.0)
        return (float(c[0]), float(c[1]), float(c[2]))

    def __call__(self, surface: SurfacePoints) -> torch.Tensor:
        return self.albedo(surface).clamp(0.0, 1.0)

    @abstractmethod
    def albedo(self, surface: SurfacePoints) -> torch.Tensor:
        """(N, 3) unclamped albedo."""


class Bricks(Texture):
    """Running-bond bricks (``size`` = width, height) with mortar joints, per-brick tint and speckle."""

    def __init__(self, seed: int, color: Color = (0.62, 0.27, 0.18), mortar_color: Color = (0.78, 0.76, 0.7),
                 size: tuple[float, float] = (0.24, 0.085), mortar: float = 0.012) -> None:
        super().__init__(seed)
        self.color, self.mortar_color = self.jitter(color), self.jitter(mortar_color, 0.03)
        self.size, self.mortar = size, mortar

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        w, h = self.size
        u, v = s.uv[:, 0], s.uv[:, 1]
        row = torch.floor(v / h)
        u_off = u + 0.5 * w * torch.remainder(row, 2.0)
        col = torch.floor(u_off / w)
        fu, fv = u_off - col * w, v - row * h
        joint = (fu < self.mortar) | (fv < self.mortar)
        ic, ir = col.long(), row.long()
        tint = 0.7 + 0.55 * self.noise.hash(ic, ir)
        hue = self.noise.hash(ic, ir, salt=1) - 0.5
        brick = _color(self.color, s.uv) * tint.unsqueeze(-1)
        brick = brick + torch.stack([0.12 * hue, 0.05 * hue, -0.05 * hue], -1)
        speck = self.noise.noise(s.uv * 45.0) - 0.5
        brick = brick * (1.0 + 0.35 * speck).unsqueeze(-1)
        mortar = _color(self.mortar_color, s.uv) * (0.9 + 0.2 * self.noise.noise(s.uv * 30.0)).unsqueeze(-1)
        return torch.where(joint.unsqueeze(-1), mortar, brick)


class Planks(Texture):
    """Wooden floor boards along ``u`` (``width`` across, ``length`` long) with grain, knots and gaps."""

    def __init__(self, seed: int, color: Color = (0.58, 0.38, 0.2), width: float = 0.16,
                 length: float = 1.1, gap: float = 0.006) -> None:
        super().__init__(seed)
        self.color, self.width, self.length, self.gap = self.jitter(color), width, length, gap

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        u, v = s.uv[:, 0], s.uv[:, 1]
        row = torch.floor(v / self.width)
        ir = row.long()
        u_off = u + self.length * self.noise.hash(ir, ir, salt=3)
        seg = torch.floor(u_off / self.length)
        iseg = seg.long()
        fv, fu = v - row * self.width, u_off - seg * self.length
        gap = (fv < self.gap) | (fu < self.gap)
        tone = 0.72 + 0.5 * self.noise.hash(iseg, ir)
        warp = self.noise.fbm(torch.stack([u * 1.5, v * 12.0], -1), octaves=3)
        grain = 0.5 + 0.5 * torch.sin(2.0 * math.pi * (v * 55.0 + 6.0 * warp + 10.0 * self.noise.hash(iseg, ir, 2)))
        fine = self.noise.noise(torch.stack([u * 6.0, v * 70.0], -1))
        shade = tone * (0.78 + 0.16 * grain + 0.12 * fine)
        wood = _color(self.color, s.uv) * shade.unsqueeze(-1)
        return torch.where(gap.unsqueeze(-1), wood * 0.35, wood)


class Wallpaper(Texture):
    """Vertical two-colour stripes with a diamond motif and a fine woven noise."""

    def __init__(self, seed: int, color_a: Color = (0.82, 0.74, 0.55), color_b: Color = (0.55, 0.65, 0.6),
                 accent: Color = (0.7, 0.25, 0.3), period: float = 0.18) -> None:
        super().__init__(seed)
        self.a, self.b, self.accent = self.jitter(color_a), self.jitter(color_b), self.jitter(accent)
        self.period = period

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        u, v = s.uv[:, 0] / self.period, s.uv[:, 1] / self.period
        stripe = torch.remainder(torch.floor(u), 2.0)
        base = _mix(_color(self.a, s.uv), _color(self.b, s.uv), stripe)
        fu, fv = u - torch.floor(u) - 0.5, torch.remainder(v, 1.0) - 0.5
        diamond = (fu.abs() + fv.abs()) < 0.28
        ring = ((fu.abs() + fv.abs()) - 0.36).abs() < 0.04
        out = torch.where(diamond.unsqueeze(-1), _color(self.accent, s.uv).expand_as(base), base)
        out = torch.where(ring.unsqueeze(-1), out * 0.6, out)
        weave = self.noise.noise(s.uv * 50.0)
        return out * (0.88 + 0.2 * weave).unsqueeze(-1)


class Tiles(Texture):
    """Square tiles with grout, per-tile tone and a perforated dot pattern (ceilings, floors)."""

    def __init__(self, seed: int, color: Color = (0.86, 0.86, 0.82), grout_color: Color = (0.45, 0.45, 0.45),
                 size: float = 0.4, grout: float = 0.01, dots: int = 6) -> None:
        super().__init__(seed)
        self.color, self.grout_color = self.jitter(color, 0.04), self.jitter(grout_color, 0.04)
        self.size, self.grout, self.dots = size, grout, dots

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        g = s.uv / self.size
        cell = torch.floor(g)
        f = (g - cell) * self.size
        grout = (f < self.grout).any(-1)
        ic = cell.long()
        tone = 0.8 + 0.3 * self.noise.hash(ic[:, 0], ic[:, 1])
        tile = _color(self.color, s.uv) * tone.unsqueeze(-1)
        d = (g - cell) * self.dots
        dd = (d - torch.floor(d) - 0.5).norm(dim=-1)
        tile = torch.where((dd < 0.18).unsqueeze(-1), tile * 0.55, tile)
        tile = tile * (0.92 + 0.16 * self.noise.noise(s.uv * 40.0)).unsqueeze(-1)
        return torch.where(grout.unsqueeze(-1), _color(self.grout_color, s.uv).expand_as(tile), tile)


class Checker(Texture):
    """Checkerboard of ``size`` cells, two colours, each cell tinted and speckled."""

    def __init__(self, seed: int, color_a: Color = (0.9, 0.88, 0.8), color_b: Color = (0.2, 0.25, 0.35),
                 size: float = 0.15) -> None:
        super().__init__(seed)
        self.a, self.b, self.size = self.jitter(color_a), self.jitter(color_b), size

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        cell = torch.floor(s.uv / self.size)
        parity = torch.remainder(cell.sum(-1), 2.0)
        ic = cell.long()
        tint = 0.8 + 0.35 * self.noise.hash(ic[:, 0], ic[:, 1])
        out = _mix(_color(self.a, s.uv), _color(self.b, s.uv), parity) * tint.unsqueeze(-1)
        return out * (0.85 + 0.3 * self.noise.noise(s.uv * 40.0)).unsqueeze(-1)


class Stripes(Texture):
    """Bands of ``period`` at ``angle`` radians cycling through a seeded palette, with fine noise."""

    def __init__(self, seed: int, palette: Sequence[Color] = ((0.85, 0.2, 0.2), (0.95, 0.85, 0.3),
                                                              (0.2, 0.4, 0.8), (0.95, 0.95, 0.9)),
                 period: float = 0.05, angle: float = 0.6) -> None:
        super().__init__(seed)
        self.palette = [self.jitter(c) for c in palette]
        self.period, self.angle = period, angle

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        w = (s.uv[:, 0] * ca + s.uv[:, 1] * sa) / self.period
        band = torch.remainder(torch.floor(w), len(self.palette)).long()
        pal = torch.as_tensor(self.palette, dtype=s.uv.dtype, device=s.uv.device)
        out = pal[band]
        across = s.uv[:, 1] * ca - s.uv[:, 0] * sa
        ticks = torch.remainder(torch.floor(across / (0.5 * self.period)), 2.0)
        out = out * (0.9 + 0.1 * ticks).unsqueeze(-1)
        return out * (0.85 + 0.3 * self.noise.noise(s.uv * 45.0)).unsqueeze(-1)


class Painting(Texture):
    """A colourful abstract picture: warped sinusoidal colour fields in a dark inner border."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.freq = self.rng.uniform(6.0, 14.0, size=(3, 2))
        self.phase = self.rng.uniform(0.0, 2.0 * math.pi, size=3)

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        warp = self.noise.fbm(s.st * 6.0, octaves=4)
        chans = []
        for c in range(3):
            fx, fy = float(self.freq[c, 0]), float(self.freq[c, 1])
            chans.append(0.5 + 0.45 * torch.sin(fx * s.st[:, 0] + fy * s.st[:, 1] + 7.0 * warp + self.phase[c]))
        out = torch.stack(chans, -1)
        out = out * (0.8 + 0.4 * self.noise.noise(s.uv * 40.0)).unsqueeze(-1)
        border = ((s.st < 0.03) | (s.st > 0.97)).any(-1)
        return torch.where(border.unsqueeze(-1), out * 0.15, out)


# 5 x 7 bitmaps, one per box face (faces 0..5).
_GLYPHS = {
    "A": [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
    "B": ["####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."],
    "C": [".####", "#....", "#....", "#....", "#....", "#....", ".####"],
    "D": ["####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."],
    "E": ["#####", "#....", "#....", "####.", "#....", "#....", "#####"],
    "F": ["#####", "#....", "#....", "####.", "#....", "#....", "#...."],
}


def _glyph_table() -> torch.Tensor:
    rows = [[[ch == "#" for ch in line] for line in _GLYPHS[k]] for k in "ABCDEF"]
    return torch.tensor(rows, dtype=torch.bool)  # (6, 7, 5)


class Letters(Texture):
    """Toy-block faces: a letter per face (A..F) on a face-coloured, finely checked background."""

    def __init__(self, seed: int, palette: Sequence[Color] = ((0.85, 0.25, 0.2), (0.25, 0.55, 0.85),
                                                              (0.95, 0.8, 0.25), (0.3, 0.7, 0.35),
                                                              (0.75, 0.4, 0.8), (0.95, 0.55, 0.2)),
                 ink: Color = (0.08, 0.08, 0.1)) -> None:
        super().__init__(seed)
        self.palette = [self.jitter(c) for c in palette]
        self.ink = self.jitter(ink, 0.02)
        self._glyphs = _glyph_table()

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        face = s.face % 6
        pal = torch.as_tensor(self.palette, dtype=s.uv.dtype, device=s.uv.device)
        bg = pal[face]
        fine = torch.remainder(torch.floor(s.st * 24.0).sum(-1), 2.0)
        bg = bg * (0.85 + 0.15 * fine).unsqueeze(-1)
        g = (s.st - 0.15) / 0.7
        inside = ((g >= 0) & (g < 1)).all(-1)
        col = (g[:, 0] * 5).clamp(0, 4).long()
        row = (g[:, 1] * 7).clamp(0, 6).long()
        lit = self._glyphs.to(s.uv.device)[face, row, col] & inside
        out = torch.where(lit.unsqueeze(-1), _color(self.ink, s.uv).expand_as(bg), bg)
        edge = ((s.st < 0.04) | (s.st > 0.96)).any(-1)
        out = torch.where(edge.unsqueeze(-1), out * 0.5, out)
        return out * (0.9 + 0.2 * self.noise.noise(s.uv * 50.0)).unsqueeze(-1)


class SolidNoise(Texture):
    """Two-colour fractal noise blend with a fine speckle (generic rough material)."""

    def __init__(self, seed: int, color_a: Color, color_b: Color, scale: float = 6.0, speckle: float = 0.3) -> None:
        super().__init__(seed)
        self.a, self.b, self.scale, self.speckle = self.jitter(color_a), self.jitter(color_b), scale, speckle

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        t = self.noise.fbm(s.uv * self.scale, octaves=5)
        out = _mix(_color(self.a, s.uv), _color(self.b, s.uv), (t - 0.2).clamp(0, 0.6) / 0.6)
        sp = self.noise.noise(s.uv * min(self.scale * 8.0, 50.0)) - 0.5
        return out * (1.0 + self.speckle * sp).unsqueeze(-1)


class Rock(Texture):
    """Grey-brown rock: layered fractal noise with dark cracks."""

    def __init__(self, seed: int, color: Color = (0.5, 0.47, 0.43)) -> None:
        super().__init__(seed)
        self.color = self.jitter(color, 0.05)

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        n = self.noise.fbm(s.uv * 4.0, octaves=5)
        crack = (self.noise.fbm(s.uv * 2.5 + 50.0, octaves=3) - 0.5).abs() < 0.025
        tone = 0.6 + 0.7 * n + 0.25 * (self.noise.noise(s.uv * 30.0) - 0.5)
        out = _color(self.color, s.uv) * tone.unsqueeze(-1)
        return torch.where(crack.unsqueeze(-1), out * 0.4, out)


class Grass(Texture):
    """Meadow ground seen from a few metres: green patches, dry spots, bare rock on steep slopes,
    blade speckle and scattered flowers. Uses the local normal (y down: ``-normal_y`` is the slope cosine)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.green, self.dry = self.jitter((0.28, 0.5, 0.18), 0.04), self.jitter((0.62, 0.6, 0.3), 0.04)
        self.rock = self.jitter((0.52, 0.5, 0.47), 0.03)
        self.flower = [self.jitter(c, 0.05) for c in ((0.95, 0.9, 0.3), (0.9, 0.35, 0.5), (0.95, 0.95, 0.95))]

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        uv = s.uv
        patches = self.noise.fbm(uv * 0.6, octaves=3)
        out = _mix(_color(self.green, uv), _color(self.dry, uv), ((patches - 0.35) / 0.35).clamp(0, 1))
        blades = self.noise.noise(uv * torch.tensor([25.0, 50.0], dtype=uv.dtype, device=uv.device))
        out = out * (0.7 + 0.55 * blades).unsqueeze(-1)
        slope = 1.0 + s.normals[:, 1]  # 0 when flat, grows with steepness
        rockiness = ((slope * 4.0 + self.noise.fbm(uv * 1.5 + 9.0, octaves=2) - 1.2) * 3.0).clamp(0, 1)
        rock = _color(self.rock, uv) * (0.6 + 0.8 * self.noise.fbm(uv * 5.0, octaves=3)).unsqueeze(-1)
        out = _mix(out, rock, rockiness)
        cell = torch.floor(uv * 30.0).long()
        fl = (self.noise.hash(cell[:, 0], cell[:, 1], salt=5) > 0.96) & (rockiness < 0.5)
        pick = (self.noise.hash(cell[:, 0], cell[:, 1], salt=6) * 3).long().clamp(max=2)
        pal = torch.as_tensor(self.flower, dtype=uv.dtype, device=uv.device)
        return torch.where(fl.unsqueeze(-1), pal[pick], out)


class Bark(Texture):
    """Tree bark: vertical furrows (along ``v``) with noise."""

    def __init__(self, seed: int, color: Color = (0.35, 0.24, 0.15)) -> None:
        super().__init__(seed)
        self.color = self.jitter(color, 0.03)

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        warp = self.noise.fbm(s.uv * torch.tensor([4.0, 1.0], dtype=s.uv.dtype, device=s.uv.device), 3)
        furrow = 0.5 + 0.5 * torch.sin(2.0 * math.pi * (s.uv[:, 0] * 30.0 + 2.0 * warp))
        tone = 0.55 + 0.45 * furrow + 0.2 * (self.noise.noise(s.uv * 30.0) - 0.5)
        return _color(self.color, s.uv) * tone.unsqueeze(-1)


class Foliage(Texture):
    """Tree canopy: dark/light green leaf clumps with a high-frequency leaf speckle."""

    def __init__(self, seed: int, color: Color = (0.2, 0.42, 0.16)) -> None:
        super().__init__(seed)
        self.color = self.jitter(color, 0.04)

    def albedo(self, s: SurfacePoints) -> torch.Tensor:
        clumps = self.noise.fbm(s.uv * 3.0, octaves=3)
        leaves = self.noise.noise(s.uv * 40.0)
        tone = 0.5 + 0.6 * clumps + 0.45 * (leaves - 0.5)
        out = _color(self.color, s.uv) * tone.unsqueeze(-1)
        berries = self.noise.hash(torch.floor(s.uv[:, 0] * 15).long(), torch.floor(s.uv[:, 1] * 15).long(), 7) > 0.96
        return torch.where(berries.unsqueeze(-1), _color((0.75, 0.15, 0.12), s.uv).expand_as(out), out)
