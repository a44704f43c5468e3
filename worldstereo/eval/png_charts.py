"""Small static PNG charts (line and grouped-bar) drawn with Pillow.

Plotly's PNG export needs kaleido and a browser, which an offline machine may lack; these charts
need nothing beyond Pillow. Series with NaN values skip those points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["PALETTE", "bar_chart", "line_chart"]

#: Series colours (plotly's default qualitative palette).
PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692")

_W, _H = 900, 520
_LEFT, _RIGHT, _TOP, _BOTTOM = 80, 190, 50, 60


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi:
        ticks.append(round(v, 10))
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-2:
        return f"{v:.1e}"
    return f"{v:g}" if abs(v) >= 1 else f"{v:.2f}"


class _Canvas:
    def __init__(self, title: str, x_label: str, y_label: str, y_lo: float, y_hi: float) -> None:
        self.img = Image.new("RGB", (_W, _H), "white")
        self.draw = ImageDraw.Draw(self.img)
        self.yticks = _nice_ticks(y_lo, y_hi)
        self.y_lo, self.y_hi = self.yticks[0], self.yticks[-1]
        d, f = self.draw, _font(14)
        d.text((_W // 2, 18), title, fill="black", font=_font(18), anchor="mm")
        d.text((_LEFT + (_W - _LEFT - _RIGHT) // 2, _H - 18), x_label, fill="black", font=f, anchor="mm")
        d.text((14, _TOP - 24), y_label, fill="black", font=f, anchor="lm")
        for t in self.yticks:
            y = self.y(t)
            d.line([(_LEFT, y), (_W - _RIGHT, y)], fill="#e5e5e5")
            d.text((_LEFT - 6, y), _fmt(t), fill="black", font=f, anchor="rm")
        d.rectangle([_LEFT, _TOP, _W - _RIGHT, _H - _BOTTOM], outline="black")

    def y(self, v: float) -> float:
        return _H - _BOTTOM - (v - self.y_lo) / (self.y_hi - self.y_lo) * (_H - _TOP - _BOTTOM)

    def legend(self, names: Sequence[str]) -> None:
        f = _font(14)
        for i, name in enumerate(names):
            y = _TOP + 10 + 22 * i
            x = _W - _RIGHT + 14
            self.draw.rectangle([x, y - 6, x + 16, y + 6], fill=PALETTE[i % len(PALETTE)])
            self.draw.text((x + 22, y), name, fill="black", font=f, anchor="lm")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.img.save(path)
        return path


def _range(values: list[float], zero: bool) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if zero:
        lo = min(lo, 0.0)
    pad = 0.05 * (hi - lo or abs(hi) or 1.0)
    return (lo if zero and lo == 0.0 else lo - pad), hi + pad


def line_chart(
    path: str | Path,
    title: str,
    x_label: str,
    y_label: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    y_from_zero: bool = False,
) -> Path:
    """Write a line chart: ``series`` maps a name to ``(xs, ys)``."""
    xs_all = [float(x) for xs, _ in series.values() for x in xs]
    ys_all = [float(y) for _, ys in series.values() for y in ys]
    c = _Canvas(title, x_label, y_label, *_range(ys_all, y_from_zero))
    x_lo, x_hi = (min(xs_all), max(xs_all)) if xs_all else (0.0, 1.0)
    if x_hi <= x_lo:
        x_hi = x_lo + 1.0
    xticks = _nice_ticks(x_lo, x_hi)
    x_lo, x_hi = xticks[0], xticks[-1]

    def X(v: float) -> float:
        return _LEFT + (v - x_lo) / (x_hi - x_lo) * (_W - _LEFT - _RIGHT)

    f = _font(14)
    for t in xticks:
        c.draw.text((X(t), _H - _BOTTOM + 12), _fmt(t), fill="black", font=f, anchor="mm")
    for i, (xs, ys) in enumerate(series.values()):
        colour = PALETTE[i % len(PALETTE)]
        run: list[tuple[float, float]] = []
        for x, y in [*zip(xs, ys, strict=True), (float("nan"), float("nan"))]:
            if math.isfinite(float(x)) and math.isfinite(float(y)):
                run.append((X(float(x)), c.y(float(y))))
                continue
            if len(run) > 1:
                c.draw.line(run, fill=colour, width=3)
            for px, py in run:
                c.draw.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=colour)
            run = []
    c.legend(list(series))
    return c.save(path)


def bar_chart(
    path: str | Path,
    title: str,
    y_label: str,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    y_from_zero: bool = True,
) -> Path:
    """Write a grouped bar chart: one group per entry of ``groups``, one bar per series in each group."""
    vals = [float(v) for vs in series.values() for v in vs]
    c = _Canvas(title, "", y_label, *_range(vals, y_from_zero))
    n_groups, n_series = len(groups), max(len(series), 1)
    span = (_W - _LEFT - _RIGHT) / max(n_groups, 1)
    bar = span * 0.8 / n_series
    f = _font(14)
    base = c.y(max(c.y_lo, 0.0)) if c.y_lo <= 0 <= c.y_hi else c.y(c.y_lo)
    for g, name in enumerate(groups):
        x0 = _LEFT + g * span + span * 0.1
        c.draw.text((x0 + span * 0.4, _H - _BOTTOM + 14), name, fill="black", font=f, anchor="mm")
        for s, vs in enumerate(series.values()):
            v = float(vs[g])
            if not math.isfinite(v):
                continue
            xa = x0 + s * bar
            top = c.y(v)
            c.draw.rectangle([xa, min(top, base), xa + bar - 2, max(top, base)], fill=PALETTE[s % len(PALETTE)])
            c.draw.text((xa + bar / 2, min(top, base) - 8), _fmt(round(v, 2)), fill="black", font=_font(11), anchor="mm")
    c.legend(list(series))
    return c.save(path)
