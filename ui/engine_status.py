"""The line the page keeps in view: which depth, scale, generator, fill and device an exploration uses,
and every fallback with its reason.

Built from a started :class:`~worldstereo.model.WorldStereo` (its ``start_info``, generator and filler), so
it says what runs, not what was asked for.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import torch

#: ``WeightsUnavailableError.reason`` codes -> why, in a few words
FALLBACK_REASONS = {
    "offline": "the Hub is switched off (HF_HUB_OFFLINE)",
    "download_failed": "the Hub could not be reached",
    "corrupt": "the downloaded weights were corrupt",
    "not_found": "no weights were found",
    "package_missing": "its package is not installed",
}

_MOGE_VARIANT = re.compile(r"moge-2-(vit[sblg])", re.IGNORECASE)
_VIT_NAMES = {"vits": "ViT-S", "vitb": "ViT-B", "vitl": "ViT-L", "vitg": "ViT-G"}


def reason_text(code: str | None) -> str:
    """A fallback reason code in words (the code itself when unknown)."""
    return FALLBACK_REASONS.get(code or "", code or "unknown reason")


def device_label(memory_device: torch.device | None = None) -> str:
    """This machine's compute: ``CUDA (<GPU name>)``, with ``; memories on the CPU`` where they stay there (a
    ZeroGPU Space, ``device="cpu"``), or ``CPU (<n> threads)`` (the thread budget's share of one generation)."""
    from worldstereo.threads import shared_policy

    if torch.cuda.is_available():
        where = "; memories on the CPU" if memory_device is not None and memory_device.type == "cpu" else ""
        return f"CUDA ({torch.cuda.get_device_name(0)}){where}"
    n = shared_policy().budget
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


def depth_label(depth_source: str, approximate: bool, depth_model: str) -> str:
    """``given depth``, ``layout prior (approximate)`` or ``MoGe-2 ViT-S`` (from the weights' repo or file name);
    :meth:`EngineStatus.of` prefixes ``panorama (27 views)`` and names the room prior for panorama starts."""
    if depth_source == "given":
        return "given depth"
    if approximate:
        return "layout prior (approximate)"
    m = _MOGE_VARIANT.search(depth_model or "")
    if m:
        return f"MoGe-2 {_VIT_NAMES[m.group(1).lower()]}"
    return f"MoGe-2 ({depth_model})" if depth_model else "MoGe-2"


@dataclass(frozen=True)
class EngineStatus:
    """What an exploration runs on.

    Attributes:
        depth: the depth in use (see :func:`depth_label`), ``from the snapshot`` for a loaded snapshot.
        scale: factor the estimated depth was scaled by to match the example's camera file (1.0 = none).
        generator: ``warp``, ``vace`` or ``oracle`` (what runs, after any fallback).
        fill: the hole filler of ``warp`` (``LaMa``, ``Telea``, ``none``), "" for the other generators.
        device: see :func:`device_label`.
        fallbacks: one entry per part that fell back, ``"<asked> -> <used>: <why>"``.
    """

    depth: str
    scale: float
    generator: str
    fill: str
    device: str
    fallbacks: tuple[str, ...] = ()

    @classmethod
    def of(cls, model) -> EngineStatus:
        """The status of a started ``WorldStereo``."""
        info = model.start_info
        fallbacks: list[str] = []
        if info is None:
            depth, scale = "from the snapshot", 1.0
        else:
            depth, scale = depth_label(info.depth_source, info.approximate, info.depth_model), float(info.scale_factor)
            prior = "layout prior"
            if info.kind in ("panorama", "views"):
                prior = "room prior"
                depth = depth.replace("layout prior", prior)
                what = "panorama" if info.kind == "panorama" else "posed views"
                depth = f"{what} ({info.num_views} views), {depth}" + (", one scale" if info.depth_source == "moge" else "")
            if info.fallback_reason:
                fallbacks.append(f"MoGe-2 -> {prior}: {reason_text(info.fallback_reason)}")
        if model.generator_fallback:
            fallbacks.append(f"vace -> warp: {reason_text(model.generator_fallback)}")
        filler = getattr(model.generator, "filler", None)
        fill = ""
        if filler is not None:
            fill = {"lama": "LaMa", "telea": "Telea", "none": "none"}.get(filler.name, filler.name)
            if getattr(filler, "fallback_reason", None):
                fallbacks.append(f"LaMa -> Telea: {reason_text(filler.fallback_reason)}")
        return cls(depth, scale, model.generator.name, fill, device_label(model.context.device), tuple(fallbacks))

    def markdown(self) -> str:
        """One line (and a second with the fallbacks, if any) for the page."""
        depth = html.escape(self.depth)
        if abs(self.scale - 1.0) > 1e-6:
            depth += f", scaled x{self.scale:.3g} to the camera file"
        parts = [f"**Depth** {depth}", f"**Generator** {html.escape(self.generator)}"]
        if self.fill:
            parts.append(f"**Fill** {html.escape(self.fill)}")
        parts.append(f"**Device** {html.escape(self.device)}")
        text = " &nbsp;|&nbsp; ".join(parts)
        if self.fallbacks:
            text += "<br>⚠️ **Fallback**: " + "; ".join(html.escape(f) for f in self.fallbacks)
        return text


NOT_STARTED = "**Depth** - &nbsp;|&nbsp; **Generator** - &nbsp;|&nbsp; **Device** " + device_label() + " (loading the first example...)"
