"""How long a new visitor waits for something to look at: ``python app.py`` in a subprocess (its
defaults: 384x288, the default example, the Hub as this machine has it), headless Chromium at
1280x800, ``--tabs`` fresh tabs (default 3) one after another.

Per tab: seconds from the page request to the status line's "Loaded" (the default example started
on the server) and to the scene on screen (first screencast frame, from Chromium's DevTools
``Page.startScreencast``, in which >5% of the 3D view's pixels are colourful; a screenshot call
would itself wait for the page to go idle). The reference is the first tab of the same run
(cold caches); later tabs show the warm figure. Prints one JSON line last.

Needs ``/usr/bin/chromium`` and playwright. Run: ``python -m benchmarks.first_view``.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the app did not answer at {url}")


def _colourful_share(jpeg_b64: str, box: dict, page_width: int) -> float:
    from PIL import Image

    im = np.asarray(Image.open(io.BytesIO(base64.b64decode(jpeg_b64))).convert("RGB")).astype(np.int16)
    s = im.shape[1] / page_width
    y0, y1 = int(box["y"] * s), int((box["y"] + box["height"]) * s)
    x0, x1 = int(box["x"] * s), int((box["x"] + box["width"]) * s)
    region = im[y0:y1, x0:x1]
    return float(((region.max(axis=2) - region.min(axis=2)) > 40).mean()) if region.size else 0.0


def measure_tab(browser, url: str, width: int = 1280, height: int = 800) -> dict:
    page = browser.new_page(viewport={"width": width, "height": height})
    cdp = page.context.new_cdp_session(page)
    frames: list[tuple[float, str]] = []

    def on_frame(event: dict) -> None:
        frames.append((time.monotonic(), event["data"]))
        cdp.send("Page.screencastFrameAck", {"sessionId": event["sessionId"]})

    cdp.on("Page.screencastFrame", on_frame)
    cdp.send("Page.startScreencast", {"format": "jpeg", "quality": 60, "maxWidth": width, "maxHeight": height})
    t0 = time.monotonic()
    page.goto(url)
    page.wait_for_function("(document.querySelector('#ws-status')?.innerText || '').includes('Loaded')", timeout=180_000)
    loaded = time.monotonic() - t0
    box = page.locator("#ws-viser").bounding_box()
    page.wait_for_timeout(10_000)
    cdp.send("Page.stopScreencast")
    visible = next((t - t0 for t, data in frames if _colourful_share(data, box, width) > 0.05), float("nan"))
    page.close()
    return {"loaded_s": round(loaded, 2), "scene_on_screen_s": round(visible, 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tabs", type=int, default=3)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, WORLDSTEREO_TEMP_DIR=str(Path("/tmp") / f"ws-first-view-{port}"))
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_up(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            tabs = [measure_tab(browser, url) for _ in range(args.tabs)]
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    for i, t in enumerate(tabs):
        print(f"tab {i}: status 'Loaded' after {t['loaded_s']:.1f} s, scene on screen after {t['scene_on_screen_s']:.1f} s")
    warm = tabs[1:] or tabs
    result = {
        "tabs": tabs,
        "first_tab_scene_s": tabs[0]["scene_on_screen_s"],
        "warm_median_scene_s": statistics.median(t["scene_on_screen_s"] for t in warm),
        "warm_vs_first": round(statistics.median(t["scene_on_screen_s"] for t in warm) / tabs[0]["scene_on_screen_s"], 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
