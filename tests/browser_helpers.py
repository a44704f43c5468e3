"""Helpers of the real-browser tests (headless Chromium driven by playwright)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ["WORLDSTEREO_SCREENSHOTS"]) if os.environ.get("WORLDSTEREO_SCREENSHOTS") else None
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def colourful_pixels(png: bytes) -> int:
    """Pixels with a saturated colour (textures of the scene; the empty viewport is white and grey)."""
    import io

    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    return int(((a.max(axis=2) - a.min(axis=2)) > 40).sum())


def save_small(png: bytes, name: str, folder: Path, width: int = 960) -> None:
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    folder = SHOTS or folder
    folder.mkdir(parents=True, exist_ok=True)
    im.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(folder / name, optimize=True)


def screen_position(viewport, point: np.ndarray, width: float, height: float) -> tuple[float, float]:
    """Where world ``point`` appears on the viewer's canvas (CSS pixels): viser's client camera is OpenCV-like
    (x right, y down, z forward; ``fov`` vertical), its pose camera-to-world."""
    T, fov = viewport.client_view()
    p = np.linalg.inv(T) @ np.append(point, 1.0)
    assert p[2] > 0, "the point is behind the viewer's camera"
    f = 0.5 * height / np.tan(0.5 * fov)
    return width / 2 + f * p[0] / p[2], height / 2 + f * p[1] / p[2]


def element_shot(page, locator) -> bytes:
    """PNG of what the page shows inside ``locator``'s box, at once (``locator.screenshot`` first waits until the
    element's box is unchanged over two animation frames, which a busy machine's Gradio page may not reach
    in 30 s while its timer refreshes the page)."""
    box = locator.bounding_box()
    return page.screenshot(clip={"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"]})


def status_has(page, elem: str, text: str, timeout: float = 120_000) -> None:
    page.wait_for_function(f"(document.querySelector('#{elem}')?.innerText || '').includes({text!r})", timeout=timeout)


def changed_share(a: bytes, b: bytes, tolerance: int = 24) -> float:
    """Share of pixels whose colour differs by more than ``tolerance`` in some channel between two same-size PNGs."""
    import io

    from PIL import Image

    x, y = (np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16) for png in (a, b))
    if x.shape != y.shape:
        return 1.0
    return float((np.abs(x - y).max(axis=2) > tolerance).mean())


def covered_share(png: bytes, tolerance: int = 12) -> float:
    """Share of an image's pixels that differ from its most common colour (the viewport's background) by more than
    ``tolerance`` in some channel: how much of the view the scene covers."""
    import io

    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16).reshape(-1, 3)
    colours, counts = np.unique(a // 4, axis=0, return_counts=True)
    background = colours[np.argmax(counts)] * 4 + 2
    return float((np.abs(a - background).max(axis=1) > tolerance).mean())


def covered_rows(png: bytes, tolerance: int = 12, min_share: float = 0.1) -> float:
    """Share of an image's rows where the scene covers at least ``min_share`` of the row (:func:`covered_share`'s
    test): how much of the view's height the scene spans."""
    import io

    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    flat = a.reshape(-1, 3)
    colours, counts = np.unique(flat // 4, axis=0, return_counts=True)
    background = colours[np.argmax(counts)] * 4 + 2
    covered = np.abs(a - background).max(axis=2) > tolerance
    return float((covered.mean(axis=1) >= min_share).mean())
