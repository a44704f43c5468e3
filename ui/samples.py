"""Inputs of the explorer: the official examples and the procedural scenes (one click), or an upload.

Every loader returns an :class:`InputBundle`: the image at its own size, an optional depth map and camera
at that size, the procedural scene (for ground truth) and the official camera paths that come with it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from worldstereo.atomic import atomic_path
from worldstereo.camera import CameraParameters
from worldstereo.examples import example_caption, example_dirs
from worldstereo.formats import NamedCameras, read_example_folder
from worldstereo.imageio_utils import load_image
from worldstereo.panorama.equirect import check_panorama_size, is_panorama_size
from worldstereo.panorama.synthetic import PANORAMA_CENTRES, SyntheticPanorama, render_panorama
from worldstereo.scenes import get_scene, list_scenes

SCENE_PREFIX = "scene: "
EXAMPLE_PREFIX = "example: "
PANORAMA_PREFIX = "panorama: "
#: width of the synthetic panorama samples (ray-cast once per process: about 10 s for the room)
PANORAMA_SAMPLE_WIDTH = 1024
DEFAULT_SAMPLE = EXAMPLE_PREFIX + "bicycle"
"""What a new page opens on: a real photo whose first official path (``eloop``, 21 poses) stays where the photo
saw. The landscape's 81-pose path turns 100 degrees into the sky, which the offline tier smears
(frame_report: flat tiles 0.19 over the path; bicycle's eloop 0.05, blockiness 1.06)."""
THUMBNAIL_SIZE = (240, 160)


@dataclass
class InputBundle:
    """One input of an exploration.

    Attributes:
        label: what the page calls it.
        image: (H, W, 3) uint8.
        depth: (H, W) float32 camera z (0 = unknown) or None (then the depth backend estimates it).
        camera: its camera (B = 1, size W x H) or None.
        scene: procedural scene name (ground truth available) or None.
        paths: official camera paths shipped with the input (may be empty).
        prompt: the example's caption (``prompt.json``), the text prompt of the ``vace`` generator.
        kind: ``image`` (a photo or a scene's start view) or ``panorama`` (an equirectangular 2:1 image;
            ``depth`` is then its range per pixel).
        world_from_pano: for a synthetic panorama, the (4, 4) map from the panorama's frame to its scene's
            world frame (ground truth of generated frames), else None.
    """

    label: str
    image: np.ndarray
    depth: np.ndarray | None = None
    camera: CameraParameters | None = None
    scene: str | None = None
    paths: list[NamedCameras] = field(default_factory=list)
    prompt: str = ""
    kind: str = "image"
    world_from_pano: torch.Tensor | None = None


def _example_dirs() -> dict[str, Path]:
    return example_dirs()


def list_samples() -> list[str]:
    """Names of the samples: the official examples (real photos, the default first), the synthetic panoramas,
    then the procedural scenes."""
    examples = sorted(_example_dirs(), key=lambda n: (EXAMPLE_PREFIX + n != DEFAULT_SAMPLE, n.startswith("photo") is False, n))
    return ([EXAMPLE_PREFIX + n for n in examples] + [PANORAMA_PREFIX + s for s in PANORAMA_CENTRES]
            + [SCENE_PREFIX + s for s in list_scenes()])


def sample_caption(name: str) -> str:
    """A short caption of a sample for the gallery: ``Landscape``, ``Bicycle``, ``Room*`` (* = synthetic).

    Other examples' folder names are shortened: ``photorealistic-outdoor-forest_path-012`` -> ``Forest path``
    (:func:`worldstereo.examples.example_caption`; the CLI's ``--example`` takes the same names)."""
    if name.startswith(SCENE_PREFIX):
        return f"{name[len(SCENE_PREFIX):].capitalize()}*"
    if name.startswith(PANORAMA_PREFIX):
        return f"{name[len(PANORAMA_PREFIX):].capitalize()} 360*"
    return example_caption(name[len(EXAMPLE_PREFIX):] if name.startswith(EXAMPLE_PREFIX) else name)


def display_name(label: str) -> str:
    """What the page calls an input everywhere (gallery, status, details): a sample's gallery caption (``Room 360*``,
    ``Bicycle``), else the input's own name (an upload's file name, ``memory snapshot``)."""
    if label.startswith((EXAMPLE_PREFIX, SCENE_PREFIX, PANORAMA_PREFIX)):
        return sample_caption(label)
    return label


def sample_thumbnail(name: str, folder: Path) -> Path:
    """A small JPEG of sample ``name`` (the example's photo, or the scene's start view) in ``folder``, made once."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / (name.replace(": ", "-").replace("/", "_") + ".jpg")
    if out.is_file():
        return out
    tw, th = THUMBNAIL_SIZE
    if name.startswith(SCENE_PREFIX):
        img, _, _ = _scene_view(name[len(SCENE_PREFIX):], tw, th)
        im = Image.fromarray(img)
    elif name.startswith(PANORAMA_PREFIX):
        small = render_panorama(name[len(PANORAMA_PREFIX):], 2 * tw, antialias=1)  # fast: not the sample's own size
        im = ImageOps.fit(Image.fromarray(small.image), (tw, th), Image.Resampling.LANCZOS)
    else:
        dirs = _example_dirs()
        key = name[len(EXAMPLE_PREFIX):]
        if key not in dirs:
            raise ValueError(f"unknown sample {name!r}; choose from {list_samples()}")
        im = Image.open(dirs[key] / "image.png").convert("RGB")
        im = ImageOps.fit(im, (tw, th), Image.Resampling.LANCZOS)  # centre crop to the gallery's aspect
    with atomic_path(out) as tmp:
        im.save(tmp, format="JPEG", quality=85)
    return out


@functools.lru_cache(maxsize=12)
def _scene_view(name: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray, CameraParameters]:
    view = get_scene(name).start_view(width, height, antialias=2)
    img = (view.image[0].permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).byte().numpy()
    return img, view.depth[0, 0].numpy(), view.camera


@functools.lru_cache(maxsize=2)
def _panorama(name: str) -> SyntheticPanorama:
    return render_panorama(name, PANORAMA_SAMPLE_WIDTH)


def load_sample(name: str, width: int, height: int) -> InputBundle:
    """Load a sample by its picker name. Procedural scenes are rendered at ``width x height`` (their exact
    depth and camera come with them); examples keep their file size (the model resizes)."""
    if name.startswith(SCENE_PREFIX):
        scene = name[len(SCENE_PREFIX):]
        img, depth, cam = _scene_view(scene, width, height)
        return InputBundle(name, img.copy(), depth.copy(), cam, scene=scene)
    if name.startswith(PANORAMA_PREFIX):
        pano = _panorama(name[len(PANORAMA_PREFIX):])
        return InputBundle(name, pano.image.copy(), pano.range.copy(), None, pano.scene, kind="panorama",
                           world_from_pano=pano.world_from_pano)
    if name.startswith(EXAMPLE_PREFIX):
        dirs = _example_dirs()
        key = name[len(EXAMPLE_PREFIX):]
        if key not in dirs:
            raise ValueError(f"unknown example {key!r}; choose from {sorted(dirs)}")
        ex = read_example_folder(dirs[key])
        first = ex.paths[0].cameras[0] if ex.paths else None
        camera = first.to(dtype=first.intrinsics.dtype) if first is not None else None
        from worldstereo.backends.vace import caption_from_prompt

        return InputBundle(name, ex.image, None, camera, None, list(ex.paths), caption_from_prompt(ex.prompt))
    raise ValueError(f"unknown sample {name!r}; choose from {list_samples()}")


def load_upload(image_path: str | Path, depth_path: str | Path | None = None, as_photo: bool = False) -> InputBundle:
    """An uploaded image (validated by ``load_image``) and optional depth map (``load_depth_map``).

    A 2:1 image is taken as a 360-degree equirectangular panorama (its depth map, if any, is the range
    per pixel) unless ``as_photo``.
    """
    from worldstereo.backends.depth_file import load_depth_map

    img = np.array(load_image(image_path))  # a writable copy
    kind = "panorama" if is_panorama_size(img.shape[1], img.shape[0]) and not as_photo else "image"
    if kind == "panorama":
        check_panorama_size(img.shape[1], img.shape[0], f"panorama {Path(image_path).name!r}")
    depth = None
    if depth_path is not None:
        depth = load_depth_map(depth_path)
        if depth.shape != img.shape[:2]:
            raise ValueError(
                f"depth map is {depth.shape[1]}x{depth.shape[0]} but the image is {img.shape[1]}x{img.shape[0]}; "
                "they must have the same size"
            )
    return InputBundle(Path(image_path).name, img, depth, None, None, [], kind=kind)
