"""The memory inspector's panels as plain data: the cloud's colours in each colour mode (with a legend), the SSM
bank at a frame, and a frame's layers. Pure functions of the library's history (:mod:`worldstereo.history`); the
session and the page only show their results.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from worldstereo.history import FrameLayers, MemoryHistory, MemoryState
from worldstereo.records import SOURCE_FALLBACK, SOURCE_MEMORY, SOURCE_MODEL, SOURCE_NONE

__all__ = [
    "COLOUR_MODES",
    "ColouredCloud",
    "bank_items",
    "colour_cloud",
    "layer_items",
    "timeline_label",
]

#: the cloud's colour modes, in the order the page lists them
COLOUR_MODES = ("RGB", "source path", "source frame", "observation count", "age", "confidence", "changes at this frame")
#: a frame's colour in "source frame" mode, by frame id (matplotlib's tab20 without its greys, repeating)
FRAME_COLOURS = [(31, 119, 180), (174, 199, 232), (255, 127, 14), (255, 187, 120), (44, 160, 44), (152, 223, 138),
                 (214, 39, 40), (255, 152, 150), (148, 103, 189), (197, 176, 213), (140, 86, 75), (196, 156, 148),
                 (227, 119, 194), (247, 182, 210), (188, 189, 34), (219, 219, 141),
                 (23, 190, 207), (158, 218, 229)]
#: frames named in the "source frame" legend (the newest)
FRAME_LEGEND = 8
#: the start's points, and the paths' colours in turn (categorical)
START_COLOUR = (150, 150, 150)
PATH_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194), (188, 189, 34), (23, 190, 207)]
ADDED, MERGED, EVICTED, UNCHANGED = (40, 200, 60), (40, 110, 255), (235, 40, 40), (120, 120, 120)
#: a kept pixel source's colour in the fill layer
SOURCE_COLOURS = {SOURCE_MEMORY: (70, 70, 70), SOURCE_MODEL: (60, 170, 255), SOURCE_FALLBACK: (255, 140, 0),
                  SOURCE_NONE: (0, 0, 0)}


def _swatch(rgb: tuple[int, int, int], text: str) -> str:
    r, g, b = rgb
    return (f'<span style="display:inline-block;width:0.9em;height:0.9em;background:rgb({r},{g},{b});'
            f'vertical-align:middle;margin:0 4px 0 10px;border-radius:2px"></span>{text}')


def _ramp(values: np.ndarray, lo: float, hi: float, colormap: int = cv2.COLORMAP_VIRIDIS) -> np.ndarray:
    """(N,) values -> (N, 3) uint8 colours of ``colormap`` between ``lo`` and ``hi``."""
    t = np.clip((np.asarray(values, np.float64) - lo) / max(hi - lo, 1e-9), 0, 1)
    return cv2.applyColorMap((t * 255).astype(np.uint8)[:, None], colormap)[:, 0, ::-1].copy()


def _ramp_legend(lo: str, hi: str, colormap: int = cv2.COLORMAP_VIRIDIS) -> str:
    stops = cv2.applyColorMap(np.linspace(0, 255, 5).astype(np.uint8)[:, None], colormap)[:, 0, ::-1]
    grad = ", ".join(f"rgb({r},{g},{b})" for r, g, b in stops)
    return (f'{lo} <span style="display:inline-block;width:8em;height:0.8em;vertical-align:middle;'
            f'background:linear-gradient(to right, {grad});border-radius:2px"></span> {hi}')


@dataclass
class ColouredCloud:
    """The cloud of a state in one colour mode: ``points`` (N, 3) float32, ``colors`` (N, 3) uint8, and a ``legend``
    (HTML). In ``changes at this frame`` the points the frame evicted are appended (red)."""

    points: np.ndarray
    colors: np.ndarray
    legend: str


def colour_cloud(state: MemoryState, mode: str, history: MemoryHistory) -> ColouredCloud:
    """The memory after a frame, coloured by ``mode`` (one of :data:`COLOUR_MODES`)."""
    if mode not in COLOUR_MODES:
        raise ValueError(f"colour mode must be one of {COLOUR_MODES}, got {mode!r}")
    pts = state.points.numpy()
    n = len(pts)
    if mode == "RGB":
        cols = (np.clip(state.colors.numpy(), 0, 1) * 255 + 0.5).astype(np.uint8)
        return ColouredCloud(pts, cols, "the points' own colours")
    if mode == "source path":
        src = state.source_frame.numpy()
        paths = {e.frame_id: e.path_index for e in history.entries}
        cols = np.tile(np.array(START_COLOUR, np.uint8), (n, 1))
        seen: dict[int, None] = {}
        for fid, p in paths.items():
            sel = src == fid
            if sel.any():
                cols[sel] = PATH_COLOURS[p % len(PATH_COLOURS)]
                seen[p] = None
        legend = _swatch(START_COLOUR, "the start") + "".join(
            _swatch(PATH_COLOURS[p % len(PATH_COLOURS)], history.path_name(p)) for p in seen)
        return ColouredCloud(pts, cols, legend)
    if mode == "source frame":
        src = state.source_frame.numpy()
        cols = np.tile(np.array(START_COLOUR, np.uint8), (n, 1))
        frames = [e.frame_id for e in history.entries if e.frame_id <= state.frame_id]
        for fid in frames:
            cols[src == fid] = FRAME_COLOURS[fid % len(FRAME_COLOURS)]
        shown = frames[-FRAME_LEGEND:]
        legend = _swatch(START_COLOUR, "the start") + "".join(
            _swatch(FRAME_COLOURS[f % len(FRAME_COLOURS)], timeline_label(history, f).split(" (")[0]) for f in shown)
        if len(frames) > len(shown):
            legend += f" (the {len(shown)} newest of {len(frames)} frames; colours repeat every {len(FRAME_COLOURS)})"
        return ColouredCloud(pts, cols, legend)
    if mode == "observation count":
        c = state.observation_counts.numpy()
        hi = max(float(np.percentile(c, 99)) if n else 1.0, 2.0)
        return ColouredCloud(pts, _ramp(np.log(np.maximum(c, 1)), 0.0, np.log(hi)),
                             "observations: " + _ramp_legend("1", f"{hi:.0f}+ (log)"))
    if mode == "age":
        here = state.frame_id
        age = here - history.frame_of_steps(state.last_seen.numpy())
        hi = max(int(age.max()) if n else 1, 1)
        return ColouredCloud(pts, _ramp(age, 0, hi, cv2.COLORMAP_INFERNO),
                             "frames since last seen: " + _ramp_legend("0", str(hi), cv2.COLORMAP_INFERNO))
    if mode == "confidence":
        return ColouredCloud(pts, _ramp(state.confidence.numpy(), 0.0, 1.0),
                             "confidence: " + _ramp_legend("0 (guessed)", "1 (observed)"))
    # changes at this frame
    cols = np.tile(np.array(UNCHANGED, np.uint8), (n, 1))
    uids = state.uids.numpy()
    e = state.entry
    if e is not None:
        seen_again = np.concatenate([e.ggm.observed, e.ggm.merged.uids])
        cols[np.isin(uids, seen_again)] = MERGED
        cols[np.isin(uids, e.ggm.added.uids)] = ADDED
    gone = state.evicted_now
    pts = np.concatenate([pts, gone.pos]) if len(gone.uids) else pts
    cols = np.concatenate([cols, np.tile(np.array(EVICTED, np.uint8), (len(gone.uids), 1))]) if len(gone.uids) else cols
    counts = (f" ({len(e.ggm.added.uids):,} added, {len(np.unique(seen_again)):,} merged or seen again, "
              f"{len(gone.uids):,} evicted)") if e is not None else ""
    legend = (_swatch(ADDED, "added") + _swatch(MERGED, "merged / seen again") + _swatch(EVICTED, "evicted")
              + _swatch(UNCHANGED, "unchanged") + counts)
    return ColouredCloud(pts, cols, legend)


def _framed(image: np.ndarray, colour: tuple[int, int, int], width: int = 4) -> np.ndarray:
    out = image.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


def _with_band(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """``image`` (h, w, 3) uint8 under a white band holding ``lines`` of text (the gallery's caption is one line,
    cut at its width; the band keeps a keyframe's numbers readable at any width)."""
    scale, step = 0.36, 13
    h, w = image.shape[:2]
    band = np.full((step * len(lines) + 4, w, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(band, line, (3, step * (i + 1) - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (30, 30, 30), 1, cv2.LINE_AA)
    return np.concatenate([band, image], axis=0)


def bank_items(state: MemoryState, history: MemoryHistory) -> list[tuple[np.ndarray, str]]:
    """The SSM bank at a frame: every stored keyframe in bank order (thumbnail, caption with its tokens, last use on
    the SSM's operation clock (what ``lru`` ranks) and importance), those this frame retrieved outlined with their attention share, then the keyframes evicted by then
    (greyed)."""
    e = state.entry
    shares = e.attention if e is not None else {}
    used = set(e.references) if e is not None else set()
    book = state.book
    items = []
    for fid, tokens, last, imp in zip(book.frame_ids, book.tokens, book.last_use, book.importance, strict=True):
        thumb = history.thumbnails.get(int(fid))
        if thumb is None:
            continue
        name = thumb.label or f"frame {int(fid)}"
        caption = f"{name}: {int(tokens)} tokens, last use at SSM clock {int(last)}, importance {float(imp):.2f}"
        lines = [name, f"{int(tokens)} tokens, lru clock {int(last)}", f"importance {float(imp):.2f}"]
        image = thumb.image
        if int(fid) in shares or int(fid) in used:
            caption += f", retrieved: {shares.get(int(fid), 0.0):.0%} of the attention"
            lines.append(f"retrieved: {shares.get(int(fid), 0.0):.0%} attn")
            image = _framed(image, (255, 200, 0))
        items.append((_with_band(image, lines), caption))
    stored_then = {int(f) for f in book.frame_ids}
    for fid, thumb in history.thumbnails.items():
        if fid not in stored_then and fid <= state.frame_id:
            grey = cv2.cvtColor(cv2.cvtColor(thumb.image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            name = thumb.label or f"frame {fid}"
            items.append((_with_band((0.5 * grey + 110).astype(np.uint8), [name, "evicted"]), f"{name}: evicted"))
    return items


def layer_items(layers: FrameLayers | None, truth_error: np.ndarray | None = None) -> list[tuple[np.ndarray, str]]:
    """A frame's layers side by side: the GGM render, its holes, what the SSM's views supplied, what was filled (by
    source), the output, the disagreement with the render (and, for a procedural scene, the ground truth's error)."""
    if layers is None:
        return []
    h, w = layers.output.shape[:2]
    items = []
    if layers.render is not None:
        items.append((layers.render, "GGM render"))
        items.append((np.repeat((layers.holes * 255).astype(np.uint8)[..., None], 3, axis=2), "holes (white)"))
    if layers.ssm is not None:
        ssm = (0.35 * layers.output).astype(np.uint8)
        ssm[layers.ssm] = layers.output[layers.ssm]
        items.append((ssm, "what the SSM's views supplied"))
    fill = np.zeros((h, w, 3), np.uint8)
    for code, colour in SOURCE_COLOURS.items():
        fill[layers.fill == code] = colour
    items.append((fill, "sources: memory (grey), model (blue), fallback fill (orange)"))
    items.append((layers.output, "output"))
    if layers.disagreement is not None:
        dis = cv2.applyColorMap(np.clip(layers.disagreement.astype(np.int32) * 4, 0, 255).astype(np.uint8),
                                cv2.COLORMAP_MAGMA)[:, :, ::-1]
        items.append((np.ascontiguousarray(dis), f"disagreement with the render (mean {layers.mean_disagreement:.3f})"))
    if truth_error is not None:
        items.append((truth_error, "error against the ground truth"))
    return items


def timeline_label(history: MemoryHistory, frame_id: int) -> str:
    """``path 2, frame 5 (frame id 27)``, or the start."""
    if history.base is not None and frame_id == history.base.frame_id:
        return f"the start (frame id {frame_id})"
    e = history.entry(frame_id)
    first = min(x.frame_id for x in history.entries if x.path_index == e.path_index)
    return f"{history.path_name(e.path_index)}, frame {frame_id - first + 1} (frame id {frame_id})"
