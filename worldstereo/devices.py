"""Which torch device an exploration runs on: its memories, renders, masks and generator.

``WorldStereoConfig.device`` takes ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. ``auto`` is CUDA where a
device is present, except on a ZeroGPU Space (``SPACES_ZERO_GPU``): there "cuda" tensors outside a
``@spaces.GPU`` call are CPU tensors in disguise and custom kernels stop at an error, so the memories
stay on the CPU and only the model runs on the GPU, inside its decorated call (DESIGN.md, "Devices").
"""

from __future__ import annotations

import os

import torch

__all__ = ["DEVICE_CHOICES", "check_device_name", "on_zero_gpu", "resolve_device"]

#: the named choices of ``WorldStereoConfig.device`` (``cuda:N`` is accepted too)
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def on_zero_gpu() -> bool:
    """Whether this process is a ZeroGPU Space (``SPACES_ZERO_GPU`` set true by the platform)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in {"1", "true", "yes"}


def check_device_name(name: str) -> str:
    """``name`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; else ``ValueError``."""
    if isinstance(name, str):
        if name in DEVICE_CHOICES:
            return name
        if name.startswith("cuda:") and name[5:].isdigit():
            return name
    raise ValueError(f"device must be one of {DEVICE_CHOICES} or 'cuda:N', got {name!r}")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a config's ``device`` (see the module docstring).

    Raises:
        ValueError: an unknown name, or a CUDA device asked for where none is present.
    """
    name = check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and not on_zero_gpu() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} needs a CUDA GPU, but torch.cuda.is_available() is False; use 'cpu' or 'auto'")
    dev = torch.device(name)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev
