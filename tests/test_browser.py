"""Real-browser test: headless Chromium (playwright) opens the page, sees the viser viewport draw the point
cloud inside the page (through the proxy), generates, and sees the frame count advance.

Skipped only when /usr/bin/chromium or the playwright package is missing. Saves screenshots to
``$WORLDSTEREO_SCREENSHOTS`` (set it to ``assets/screenshots`` to refresh the README's PNGs), else
to a temporary folder: a test run never changes the repository.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs /usr/bin/chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

sys.path.insert(0, str(Path(__file__).parent))
from app_harness import running_app  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]

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


def test_page_viewport_generate(tmp_path):
    with running_app(tmp_path / "sessions") as (url, built), sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(url)
            page.wait_for_selector("#ws-viser", timeout=60_000)
            viewer = page.frame_locator("#ws-viser")
            viewer.locator("canvas").first.wait_for(timeout=60_000)
            # the viser client connected through the proxy, to its page's own path
            page.wait_for_function("1", timeout=1000)
            iframe = page.locator("#ws-viser")
            empty = colourful_pixels(iframe.screenshot())

            page.locator("#ws-sample input").fill("scene: tabletop")
            page.keyboard.press("Enter")
            page.click("#ws-load")
            page.wait_for_function("document.querySelector('#ws-status').innerText.includes('Loaded')", timeout=240_000)
            assert "tabletop" in page.inner_text("#ws-status")
            page.wait_for_timeout(3000)
            loaded = colourful_pixels(iframe.screenshot())
            assert loaded > empty + 2000, (empty, loaded)
            assert any("/viser/" in m and "Connected" in m for m in console), console[-5:]

            frames = page.locator("#ws-frames input[type=number]")
            frames.fill("5")
            frames.press("Enter")
            page.click("#ws-generate")
            page.wait_for_function("document.querySelector('#ws-progress').innerText.includes('Frame 2 / 5')", timeout=120_000)
            page.wait_for_function("document.querySelector('#ws-progress').innerText.includes('Done: 5 frames')", timeout=120_000)
            session = next(iter(built.sessions._sessions.values()))
            assert len(session.frames) == 5 and session.viewport.num_clients == 1
            page.wait_for_timeout(2000)
            close = viewer.locator(".mantine-Notification-closeButton")
            if close.count():  # the "software WebGL" notice of headless Chromium, not part of the app
                close.first.click()
                page.wait_for_timeout(500)
            save_small(iframe.screenshot(), "viewport.png", tmp_path, width=720)
            save_small(page.screenshot(full_page=False), "explorer.png", tmp_path)
        finally:
            browser.close()
