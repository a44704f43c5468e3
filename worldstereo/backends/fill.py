"""Hole fillers for the ``warp`` generator: what a frame shows where the memories know nothing.

Registered in :data:`FILL_BACKENDS`:

* ``lama``  LaMa (Apache-2.0) through ONNX Runtime (CPU provider; CUDA when present), weights from
  the Hugging Face Hub (:mod:`worldstereo.hub`: cache, progress, one download per process);
* ``telea`` OpenCV's Telea inpainting (no weights; smooth, smears large regions);
* ``none``  holes stay empty (black, no depth): what the memories alone know.

``auto`` (:func:`make_filler`) is LaMa when its weights can be had, else Telea with one message
saying why. Every filler changes hole pixels only.

LaMa ONNX exports differ, and the graph says which one is loaded
(``InferenceSession.get_inputs()``): two inputs ``image`` (1, 3, S, S) and ``mask`` (1, 1, S, S)
at a fixed size (``Carve/LaMa-ONNX``), or one input (1, 4, H, W) = masked RGB + mask with sides a
multiple of 32 (``g-ronimo/lama``). The output range ([0, 1] or [0, 255]) is not in the graph: it
is taken from :data:`OUTPUT_SCALES` for the published files, else from the output itself.

Images are (3, H, W) float in [0, 1]; masks (1, H, W) bool, True = hole.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from worldstereo import hub
from worldstereo.backends.registry import Registry
from worldstereo.config import FILL_CHOICES
from worldstereo.records import SOURCE_FALLBACK, SOURCE_MODEL, SOURCE_NONE
from worldstereo.threads import current_threads

__all__ = [
    "DEFAULT_LAMA",
    "FILL_BACKENDS",
    "FILL_CHOICES",
    "HoleFiller",
    "LamaFill",
    "NoFill",
    "TeleaFill",
    "lama_source",
    "make_filler",
]

FILL_BACKENDS: Registry[Any] = Registry("fill backend")
#: default LaMa weights: (Hub repo, file). big-lama exported at a fixed 512x512 (207 MB), chosen for
#: its model card's licence: Apache-2.0 like LaMa itself. ``g-ronimo/lama``'s weight-only int8
#: export (62 MB, any size, faster on a CPU) states no licence on its card, so it is an opt-in
#: (``WORLDSTEREO_LAMA=g-ronimo/lama/lama_int8.onnx``).
DEFAULT_LAMA = ("Carve/LaMa-ONNX", "lama.onnx")
#: environment variable naming other LaMa weights: ``owner/repo/file.onnx`` on the Hub, or a local ``.onnx`` path
LAMA_ENV = "WORLDSTEREO_LAMA"
#: output range of published exports (the ONNX graph does not say): multiply by this to get [0, 1]
OUTPUT_SCALES = {
    ("g-ronimo/lama", "lama.onnx"): 1.0,
    ("g-ronimo/lama", "lama_fp16.onnx"): 1.0,
    ("g-ronimo/lama", "lama_int8.onnx"): 1.0,
    ("g-ronimo/lama", "lama_512_fp16.onnx"): 1.0,
    ("g-ronimo/lama", "lama_512_int8.onnx"): 1.0,
    ("Carve/LaMa-ONNX", "lama.onnx"): 1.0 / 255.0,
    ("Carve/LaMa-ONNX", "lama_fp32.onnx"): 1.0 / 255.0,
}
#: longest side of the network input for a dynamic-size export (LaMa's cost grows with the area)
MAX_SIDE = 512
#: context around the holes' bounding box, as a share of its size (at least ``MIN_CONTEXT`` pixels)
CONTEXT = 0.5
MIN_CONTEXT = 24
#: below this share of new holes a frame only shows slivers (disocclusion edges): Telea fills them and LaMa is
#: not called; with the look-ahead this keeps a 21-frame orbit preset at 6-11 calls
MIN_LAMA_SHARE = 0.05
#: width in pixels over which a hole's border fades from its surroundings into the network's fill
FEATHER = 3.0


class HoleFiller:
    """Base class: ``fill(image, hole) -> image`` changing hole pixels only.

    ``calls`` counts the fills that did work (for LaMa: network runs) and ``seconds`` their time.
    """

    name = "base"
    #: one line about what runs (and why, for a fallback)
    message = ""
    calls = 0
    seconds = 0.0
    #: an expensive filler: the generator fills a wider view around the frame at once (look-ahead),
    #: so that the next frames of a turning path find their new edges already known
    lookahead = False
    #: hole share below which a frame's holes are slivers the filler's cheap path handles
    min_share = 0.0

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """Args: image (3, H, W) float in [0, 1]; hole (1, H, W) bool. Returns (3, H, W)."""
        raise NotImplementedError

    def source_of(self, hole: torch.Tensor) -> int:
        """The pixel source (:mod:`worldstereo.records`) of what :meth:`fill` puts into ``hole`` (1, H, W) bool."""
        return SOURCE_FALLBACK


@FILL_BACKENDS.register("telea", "OpenCV Telea inpainting (no weights)")
class TeleaFill(HoleFiller):
    """OpenCV's Telea inpainting (``cv2.inpaint``)."""

    name = "telea"

    def __init__(self, radius: int = 3, reason: str = "", fallback_reason: str | None = None) -> None:
        self.radius = int(radius)
        self.message = "Telea inpainting" + (f" ({reason})" if reason else "")
        #: why LaMa did not run under ``auto`` (a ``WeightsUnavailableError.reason``), None when Telea was chosen
        self.fallback_reason = fallback_reason

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        import time

        from worldstereo.geometry.holes import inpaint_colors

        if not bool(hole.any()):
            return image.clone()
        t0 = time.perf_counter()
        out = inpaint_colors(image, hole, self.radius)
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return out


@FILL_BACKENDS.register("none", "no filling: holes stay black (what the memories alone know)")
class NoFill(HoleFiller):
    """Holes stay black; the generator gives them no depth, so they never enter the memories."""

    name = "none"
    message = "no hole filling"

    def source_of(self, hole: torch.Tensor) -> int:
        return SOURCE_NONE

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        return torch.where(hole, torch.zeros_like(image), image)


@dataclass(frozen=True)
class LamaGraph:
    """What an ONNX LaMa export expects, read from its graph.

    Attributes:
        convention: ``image+mask`` (two inputs) or ``rgbm`` (one 4-channel input).
        inputs: input names in the order they are fed (image, mask) or (rgbm,).
        size: fixed square side, or None for any size with sides a multiple of ``multiple``.
        multiple: side multiple for dynamic sizes.
    """

    convention: str
    inputs: tuple[str, ...]
    size: int | None
    multiple: int = 32


def read_lama_graph(session: Any) -> LamaGraph:
    """Read the input convention of a LaMa ``onnxruntime.InferenceSession``.

    Raises:
        ValueError: the graph fits neither convention.
    """
    ins = session.get_inputs()

    def channels(inp: Any) -> int | None:
        shape = list(inp.shape)
        return shape[1] if len(shape) == 4 and isinstance(shape[1], int) else None

    def fixed_side(inp: Any) -> int | None:
        h, w = list(inp.shape)[2:4]
        if isinstance(h, int) and isinstance(w, int):
            if h != w:
                raise ValueError(f"LaMa export with a fixed non-square input {h}x{w} is not supported")
            return h
        return None

    if len(ins) == 2:
        by_channels = {channels(i): i for i in ins}
        if set(by_channels) != {1, 3}:
            raise ValueError(f"a two-input LaMa export needs a 3-channel image and a 1-channel mask, got {[i.shape for i in ins]}")
        image, mask = by_channels[3], by_channels[1]
        return LamaGraph("image+mask", (image.name, mask.name), fixed_side(image), 8)
    if len(ins) == 1 and channels(ins[0]) == 4:
        return LamaGraph("rgbm", (ins[0].name,), fixed_side(ins[0]), 32)
    raise ValueError(f"not a LaMa export: inputs {[(i.name, i.shape) for i in ins]}")


def _window(hole: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the holes' bounding box with context, square where the image allows."""
    ys, xs = np.nonzero(hole)
    h, w = hole.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0)
    side = min(max(h, w), int(side + 2 * max(MIN_CONTEXT, CONTEXT * side)))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    sy, sx = min(side, h), min(side, w)
    top = int(round(min(max(cy - sy / 2, 0), h - sy)))
    left = int(round(min(max(cx - sx / 2, 0), w - sx)))
    return top, top + sy, left, left + sx


def _feathered(orig: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``filled`` in the holes, faded in from their border over about ``FEATHER`` pixels.

    At a hole's border the result is a Telea inpainting of ``orig`` (continuous with the known
    pixels beside it); with the distance ``d`` into the hole it turns into ``filled`` as
    ``1 - exp(-d / FEATHER)``. Known pixels are returned unchanged.

    Args: orig, filled (H, W, 3) float32 in [0, 1]; hole (H, W) bool.
    """
    img8 = (np.clip(orig, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    base = cv2.inpaint(img8, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    dist = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    ramp = (1.0 - np.exp(-dist / FEATHER))[..., None]
    out = np.where(hole[..., None], base + ramp * (filled - base), orig)
    return np.clip(out, 0.0, 1.0)


@FILL_BACKENDS.register("lama", "LaMa through ONNX Runtime, weights from the Hugging Face Hub")
class LamaFill(HoleFiller):
    """LaMa inpainting of a context window around the holes (module docstring).

    Args:
        weights: an ``.onnx`` file, or None for ``repo``/``filename`` from the Hub.
        repo, filename: Hub file; None = :func:`lama_source` (``WORLDSTEREO_LAMA``, else :data:`DEFAULT_LAMA`).
        output_scale: factor bringing the output to [0, 1]; None = known per file, else from the output.
        device: ``cpu`` or ``cuda`` (the CUDA provider when onnxruntime has it).
        download, progress, show_progress: see :func:`worldstereo.hub.fetch_file`.
    Raises:
        hub.WeightsUnavailableError: onnxruntime missing, weights not had, or not a LaMa export.
    """

    name = "lama"
    lookahead = True
    min_share = MIN_LAMA_SHARE

    def __init__(
        self,
        weights: str | Path | None = None,
        repo: str | None = None,
        filename: str | None = None,
        output_scale: float | None = None,
        device: str = "cpu",
        download: bool = True,
        progress: hub.ProgressCallback | None = None,
        show_progress: bool = True,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as err:
            raise hub.WeightsUnavailableError(
                f"LaMa needs onnxruntime ({err}); `pip install onnxruntime`", "package_missing"
            ) from err
        if weights is None and repo is None and filename is None:
            try:
                source = lama_source()
            except ValueError as err:
                raise hub.WeightsUnavailableError(str(err), "not_found") from err
            if isinstance(source, Path):
                weights = source
            else:
                repo, filename = source
        repo = repo or DEFAULT_LAMA[0]
        filename = filename or DEFAULT_LAMA[1]
        if weights is not None:
            path = Path(weights)
            if not path.is_file():
                raise hub.WeightsUnavailableError(f"LaMa weights {path.name!r} not found", "not_found")
            self.source = path.name
        else:
            path = hub.fetch_file(repo, filename, progress=progress, show_progress=show_progress, download=download)
            self.source = f"{repo}/{filename}"
        self.session = _session(path, device, onnxruntime)
        try:
            self.graph = read_lama_graph(self.session)
        except ValueError as err:
            raise hub.WeightsUnavailableError(f"{self.source}: {err}", "corrupt") from err
        known = OUTPUT_SCALES.get((repo, filename)) if weights is None else None
        self.output_scale = output_scale if output_scale is not None else known
        self.calls = 0
        self.seconds = 0.0
        self.message = f"LaMa ({self.source}, {self.graph.convention}, ONNX Runtime {self.session.get_providers()[0]})"

    def _net_size(self, h: int, w: int) -> tuple[int, int]:
        if self.graph.size is not None:
            return self.graph.size, self.graph.size
        m = self.graph.multiple
        scale = min(1.0, MAX_SIDE / max(h, w))
        return max(m, int(round(h * scale / m)) * m), max(m, int(round(w * scale / m)) * m)

    def _run(self, crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(h, w, 3) float crop in [0, 1], (h, w) bool mask -> the network's (h, w, 3) output in [0, 1]."""
        import time

        h, w = mask.shape
        nh, nw = self._net_size(h, w)
        img = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR)
        m = (cv2.resize(mask.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR) > 0).astype(np.float32)
        img_t = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
        m_t = m[None, None]
        if self.graph.convention == "image+mask":
            feeds = {self.graph.inputs[0]: img_t, self.graph.inputs[1]: m_t}
        else:
            feeds = {self.graph.inputs[0]: np.concatenate([img_t * (1.0 - m_t), m_t], axis=1)}
        t0 = time.perf_counter()
        out = np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)[0].transpose(1, 2, 0)
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        scale = self.output_scale
        if scale is None:  # an unknown export: [0, 255] outputs are recognisable by their range
            scale = 1.0 / 255.0 if float(np.nanmax(out)) > 1.5 else 1.0
        out = np.nan_to_num(out * scale, nan=0.5).clip(0.0, 1.0)
        return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)

    def source_of(self, hole: torch.Tensor) -> int:
        # below MIN_LAMA_SHARE the network is not called: Telea fills the slivers
        return SOURCE_MODEL if hole[0].cpu().numpy().astype(bool).mean() >= MIN_LAMA_SHARE else SOURCE_FALLBACK

    def fill(self, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        mask = hole[0].cpu().numpy().astype(bool)
        if not mask.any():
            return image.clone()
        if mask.mean() < MIN_LAMA_SHARE:
            return TeleaFill().fill(image, hole)
        img = image.permute(1, 2, 0).cpu().numpy().astype(np.float32)
        y0, y1, x0, x1 = _window(mask)
        crop, cmask = img[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        filled = self._run(crop, cmask)
        out = img.copy()
        out[y0:y1, x0:x1] = _feathered(crop, filled, cmask)
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).to(image.dtype)


def lama_source() -> tuple[str, str] | Path:
    """The LaMa weights to use: ``WORLDSTEREO_LAMA`` when set, else :data:`DEFAULT_LAMA`.

    Returns:
        ``(repo, filename)`` on the Hub, or the :class:`~pathlib.Path` of a local file.
    Raises:
        ValueError: the variable is set to neither an existing ``.onnx`` file nor ``owner/repo/file``.
    """
    value = os.environ.get(LAMA_ENV, "").strip()
    if not value:
        return DEFAULT_LAMA
    if Path(value).expanduser().is_file():
        return Path(value).expanduser()
    parts = value.split("/")
    if len(parts) >= 3 and all(parts) and not value.startswith((".", "/", "~")):
        return "/".join(parts[:2]), "/".join(parts[2:])
    raise ValueError(f"{LAMA_ENV} must be a local .onnx file or owner/repo/file.onnx on the Hub, got {value!r}")


_sessions: dict[tuple[str, str], Any] = {}
_sessions_lock = threading.Lock()


def _session(path: Path, device: str, ort: Any) -> Any:
    """One ``InferenceSession`` per (file, device) in the process, shared by every caller."""
    key = (str(Path(path).resolve()), device)
    with _sessions_lock:
        if key not in _sessions:
            providers = ["CPUExecutionProvider"]
            if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            opts = ort.SessionOptions()
            # the process's thread budget (worldstereo.threads); no spinning between runs, which
            # only burns the cores the rest of the frame's work needs
            opts.intra_op_num_threads = current_threads()
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                _sessions[key] = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
            except Exception as err:  # an unreadable or non-ONNX file
                if "models--" in str(path):
                    hub.discard_cached(Path(path))
                raise hub.WeightsUnavailableError(
                    f"LaMa weights {Path(path).name!r} are not a readable ONNX model ({hub._one_line(err)}); "
                    "a cached copy was removed", "corrupt",
                ) from err
        return _sessions[key]


def make_filler(
    name: str = "auto",
    *,
    device: str = "cpu",
    progress: hub.ProgressCallback | None = None,
    show_progress: bool = True,
) -> HoleFiller:
    """A filler by name; ``auto`` = LaMa when it can be had, else Telea with the reason in its message.

    Raises:
        ValueError: unknown name. hub.WeightsUnavailableError: ``lama`` asked for and not available.
    """
    if name not in FILL_CHOICES:
        raise ValueError(f"fill must be one of {FILL_CHOICES}, got {name!r}")
    if name == "auto":
        try:
            return LamaFill(device=device, progress=progress, show_progress=show_progress)
        except hub.WeightsUnavailableError as err:
            return TeleaFill(reason=f"LaMa unavailable: {err}", fallback_reason=err.reason)
    if name == "lama":
        return LamaFill(device=device, progress=progress, show_progress=show_progress)
    return FILL_BACKENDS.create(name)


def fill_is_geometry(filler: HoleFiller) -> bool:
    """Whether filled pixels get depth and enter the memories (all but ``none``)."""
    return filler.name != "none"
