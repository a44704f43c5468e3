"""The example inputs shipped in ``assets/examples`` (the official WorldStereo examples, Apache-2.0), by name.

An example is a folder holding ``image.png`` (and ``camera.json`` or ``renders/traj_*/camera.json``,
``prompt.json``). The CLI's ``--example`` and the app's gallery name them alike: by folder name
(``bicycle``, ``Caterpillar``) or by caption (``Kitchen``, ``Landscape``), in any case. Set
``WORLDSTEREO_EXAMPLES`` to a folder of examples laid out the same way to use others.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["EXAMPLES_ENV", "EXAMPLE_CAPTIONS", "example_caption", "example_dirs", "examples_root", "resolve_example"]

#: environment variable naming another examples folder
EXAMPLES_ENV = "WORLDSTEREO_EXAMPLES"
#: captions of the shipped examples whose folder names are long (others: from their folder name)
EXAMPLE_CAPTIONS = {
    "photorealistic-outdoor-verdant_landscape-050": "Landscape",
    "photorealistic-indoor-dining_spaces-030": "Kitchen",
}


def examples_root() -> Path:
    """The examples folder: ``WORLDSTEREO_EXAMPLES``, else the repository's ``assets/examples``."""
    env = os.environ.get(EXAMPLES_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[1] / "assets" / "examples"


def example_dirs() -> dict[str, Path]:
    """Folder name -> folder of every example (reconstruction examples first, then images)."""
    out: dict[str, Path] = {}
    root = examples_root()
    for group in ("reconstruction", "images"):
        if (root / group).is_dir():
            for d in sorted((root / group).iterdir()):
                if (d / "image.png").is_file():
                    out[d.name] = d
    return out


def example_caption(name: str) -> str:
    """A short caption of an example folder name: ``Bicycle``, ``Kitchen``; ``photorealistic-outdoor-forest_path-012``
    -> ``Forest path``."""
    if name in EXAMPLE_CAPTIONS:
        return EXAMPLE_CAPTIONS[name]
    key = name
    if key.startswith("photorealistic-") and key.count("-") >= 3:  # photorealistic-<where>-<words>-<id>
        key = key.split("-")[2].replace("_", " ")
    return f"{key[:1].upper()}{key[1:]}"


def resolve_example(text: str | os.PathLike) -> Path:
    """An example folder from a path, or from a name (folder name or caption, any case).

    Raises:
        ValueError: neither a folder nor a known name (the message lists the names).
    """
    p = Path(text)
    if p.is_dir():
        return p
    dirs = example_dirs()
    want = str(text).strip().lower()
    for name, folder in dirs.items():
        if want in (name.lower(), example_caption(name).lower()):
            return folder
    names = ", ".join(sorted({example_caption(n) for n in dirs}, key=str.lower)) or "none shipped"
    raise ValueError(f"example folder not found: {str(text)!r}; give a folder, or an example's name ({names})")
