"""Depth backends (moge, file, prior), their registry and the validated image loader."""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from worldstereo.backends import depth_file, depth_moge, depth_prior  # noqa: F401  (registers the backends)
from worldstereo.backends.depth import DEPTH_BACKENDS, DepthResult, check_image_tensor
from worldstereo.backends.depth_file import FileDepth, load_depth_map
from worldstereo.backends.depth_moge import (
    MOGE_WEIGHTS_ENV,
    MoGeDepth,
    MoGeUnavailableError,
    moge_intrinsics_to_pixels,
    resolve_moge_weights,
)
from worldstereo.backends.depth_prior import LayoutPriorDepth, layout_prior_depth
from worldstereo.backends.factory import default_depth_estimator
from worldstereo.camera import CameraParameters
from worldstereo.imageio_utils import image_to_tensor, load_image, tensor_to_image


def _image(height: int = 48, width: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, height, width, generator=g)


# ---------------------------------------------------------------- registry and result type
def test_registry_names_and_create():
    assert {"moge", "file", "prior"} <= set(DEPTH_BACKENDS.names())
    est = DEPTH_BACKENDS.create("prior", median_depth=2.0)
    assert isinstance(est, LayoutPriorDepth)
    with pytest.raises(ValueError, match="unknown depth backend 'nope'"):
        DEPTH_BACKENDS.create("nope")


def test_depth_result_validation():
    with pytest.raises(ValueError, match=r"\(1, 1, H, W\)"):
        DepthResult(torch.ones(1, 4, 4), None, False, "x")
    with pytest.raises(ValueError, match="non-negative"):
        DepthResult(-torch.ones(1, 1, 4, 4), None, False, "x")
    with pytest.raises(ValueError, match="NaN or inf"):
        DepthResult(torch.full((1, 1, 2, 2), math.nan), None, False, "x")
    with pytest.raises(ValueError, match="intrinsics"):
        DepthResult(torch.ones(1, 1, 2, 2), torch.eye(4), False, "x")
    r = DepthResult(torch.tensor([[[[0.0, 2.0]]]]), torch.eye(3), False, "x")
    assert (r.height, r.width) == (1, 2)
    assert r.valid_mask.tolist() == [[[[False, True]]]]


def test_check_image_tensor():
    assert check_image_tensor(torch.rand(3, 5, 7)).shape == (1, 3, 5, 7)
    with pytest.raises(ValueError, match="shape"):
        check_image_tensor(torch.rand(2, 3, 5, 7))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_image_tensor(torch.rand(1, 3, 5, 7) * 255)
    with pytest.raises(ValueError, match="float"):
        check_image_tensor(torch.zeros(1, 3, 5, 7, dtype=torch.uint8))


# ---------------------------------------------------------------- prior
def test_prior_layout_shape_and_monotone():
    result = LayoutPriorDepth().estimate(_image(60, 80))
    d = result.depth
    assert d.shape == (1, 1, 60, 80) and d.dtype == torch.float32
    assert result.approximate and result.intrinsics is None and result.backend == "prior"
    assert "approximate" in result.message
    assert bool(torch.isfinite(d).all()) and float(d.min()) > 0
    rows = d[0, 0, :, 0]
    assert torch.equal(d[0, 0], rows[:, None].expand(60, 80))  # constant along each row
    ground = rows[30:]  # below the horizon (middle): strictly nearer row after row
    assert bool((ground[1:] < ground[:-1]).all())
    assert bool((rows[1:] <= rows[:-1] + 1e-6).all())  # never farther going down
    # backdrop: top rows at the far depth, far / bottom-row depth = far_near_ratio
    assert float(rows[0]) == pytest.approx(float(rows.max()))
    assert float(rows[0] / rows[-1]) == pytest.approx(4.0, rel=0.02)
    assert float(np.median(d.numpy())) == pytest.approx(3.0, rel=0.02)


def test_prior_ground_is_a_plane_below_the_horizon():
    # Far from the horizon seam, inverse depth is linear in the row (a ground plane seen level).
    d = layout_prior_depth(100, 10, horizon=0.4, far_near_ratio=5.0, median_depth=1.0)[0, 0, :, 0].double()
    inv = 1.0 / d[60:]
    steps = inv[1:] - inv[:-1]
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-4)


def test_prior_deterministic_and_image_independent():
    a = LayoutPriorDepth(reason="no weights").estimate(_image())
    b = LayoutPriorDepth(reason="no weights").estimate(torch.zeros(1, 3, 48, 64))
    assert torch.equal(a.depth, b.depth)
    assert a.message.endswith("(no weights)")


@pytest.mark.parametrize(
    "kwargs", [{"horizon": 1.0}, {"far_near_ratio": 1.0}, {"median_depth": 0.0}, {"median_depth": math.inf}]
)
def test_prior_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LayoutPriorDepth(**kwargs)


# ---------------------------------------------------------------- file
def _png16(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(values.astype(np.uint16)).save(path)
    return path


def test_file_png16_millimetres(tmp_path):
    mm = np.arange(12, dtype=np.uint16).reshape(3, 4) * 250  # 0, 250, ..., 2750 mm
    est = FileDepth(_png16(tmp_path / "d.png", mm))
    result = est.estimate(_image(3, 4))
    assert result.depth.shape == (1, 1, 3, 4) and result.depth.dtype == torch.float32
    assert np.allclose(result.depth[0, 0].numpy(), mm / 1000.0)
    assert float(result.depth[0, 0, 0, 0]) == 0.0  # 0 stays unknown
    assert not result.approximate and result.intrinsics is None and result.backend == "file"
    # full 16-bit range survives (no 8-bit truncation)
    big = np.full((2, 2), 65000, dtype=np.uint16)
    assert float(load_depth_map(_png16(tmp_path / "big.png", big)).max()) == pytest.approx(65.0)


def test_file_png_8bit_or_colour_rejected(tmp_path):
    Image.fromarray(np.full((3, 4), 7, dtype=np.uint8)).save(tmp_path / "d8.png")
    with pytest.raises(ValueError, match="16-bit"):
        FileDepth(tmp_path / "d8.png")
    Image.fromarray(np.full((3, 4, 3), 7, dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="16-bit"):
        FileDepth(tmp_path / "rgb.png")


def test_file_npy(tmp_path):
    arr = np.linspace(0.5, 4.0, 20, dtype=np.float64).reshape(4, 5)
    np.save(tmp_path / "d.npy", arr)
    result = FileDepth(tmp_path / "d.npy").estimate(_image(4, 5))
    assert np.allclose(result.depth[0, 0].numpy(), arr)
    np.save(tmp_path / "d1.npy", arr[None].astype(np.float32))  # (1, H, W) accepted
    assert load_depth_map(tmp_path / "d1.npy").shape == (4, 5)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        FileDepth(tmp_path / "obj.npy")
    np.save(tmp_path / "rgb.npy", np.ones((4, 5, 3)))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        FileDepth(tmp_path / "rgb.npy")


def test_file_exr(tmp_path):
    OpenEXR = pytest.importorskip("OpenEXR")
    z = np.linspace(0.25, 9.0, 30, dtype=np.float32).reshape(5, 6)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Z": z}) as f:
        f.write(str(tmp_path / "z.exr"))
    result = FileDepth(tmp_path / "z.exr").estimate(_image(5, 6))
    assert np.array_equal(result.depth[0, 0].numpy(), z)
    # several channels: the one named Z is picked
    with OpenEXR.File(header, {"Z": z, "A": np.ones_like(z)}) as f:
        f.write(str(tmp_path / "za.exr"))
    assert np.array_equal(load_depth_map(tmp_path / "za.exr"), z)
    # colour is not depth
    with OpenEXR.File(header, {"G": z, "B": np.ones_like(z)}) as f:
        f.write(str(tmp_path / "gb.exr"))
    with pytest.raises(ValueError, match="depth channel"):
        FileDepth(tmp_path / "gb.exr")


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.array([[1.0, np.nan], [1.0, 1.0]]), "NaN or inf"),
        (np.array([[1.0, np.inf], [1.0, 1.0]]), "NaN or inf"),
        (np.array([[1.0, -0.5], [1.0, 1.0]]), "negative"),
        (np.zeros((2, 2)), "all zero"),
    ],
)
def test_file_invalid_values(tmp_path, values, match):
    np.save(tmp_path / "d.npy", values)
    with pytest.raises(ValueError, match=match):
        FileDepth(tmp_path / "d.npy")


def test_file_size_mismatch_names_both_sizes(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((4, 5)))
    est = FileDepth(tmp_path / "d.npy")
    with pytest.raises(ValueError, match=r"5x4 .* 6x4"):
        est.estimate(_image(4, 6))


def test_file_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        FileDepth(tmp_path / "missing.npy")
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="unsupported type"):
        FileDepth(tmp_path / "d.txt")
    (tmp_path / "fake.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="fake.png"):
        FileDepth(tmp_path / "fake.png")


# ---------------------------------------------------------------- image loading
def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_load_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(load_image(tmp_path / "rgb.png"), rgb)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 10, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(load_image(tmp_path / "rgba.png"), rgb)
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = load_image(tmp_path / "grey.png")
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.repeat(grey[..., None], 3, axis=-1))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    assert np.array_equal(load_image(tmp_path / "grey16.png")[..., 1], grey)


def test_load_image_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("hello, I am text")
    with pytest.raises(ValueError, match="not an image"):
        load_image(tmp_path / "notes.png")
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_image(tmp_path / "cut.png")
    # over our limit (checked from the header, nothing decoded) and over Pillow's bomb guard
    with pytest.raises(ValueError, match="limit"):
        load_image(_png_header_only(tmp_path / "big.png", 5000, 5000))
    with pytest.raises(ValueError, match="too large"):
        load_image(_png_header_only(tmp_path / "bomb.png", 100_000, 100_000))
    with pytest.raises(ValueError, match="limit"):
        load_image(tmp_path / "full.png", max_pixels=64 * 63)


def test_image_tensor_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = image_to_tensor(rgb)
    assert t.shape == (1, 3, 5, 7) and t.dtype == torch.float32
    assert float(t[0, 1, 2, 3]) == pytest.approx(rgb[2, 3, 1] / 255.0)
    assert np.array_equal(tensor_to_image(t), rgb)


def test_load_example_image(examples_dir):
    path = next(iter(sorted((examples_dir / "images").glob("*/image.png"))))
    img = load_image(path)
    assert img.ndim == 3 and img.shape[-1] == 3 and img.dtype == np.uint8
    result = LayoutPriorDepth().estimate(image_to_tensor(img))  # the app's path from file to depth
    assert result.depth.shape == (1, 1, img.shape[0], img.shape[1])


# ---------------------------------------------------------------- moge
def _tiny_moge_config() -> dict:
    """MoGe-2's architecture with the smallest backbone and thin heads (random weights)."""
    dims = [32, 16, 16, 8, 8]
    resamplers = ["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"]

    def stack(dim_in, dim_out):
        return {
            "dim_in": dim_in,
            "dim_out": dim_out,
            "dim_res_blocks": dims,
            "num_res_blocks": [0, 1, 1, 1, 0],
            "res_block_in_norm": "none",
            "res_block_hidden_norm": "none",
            "resamplers": resamplers,
        }

    return {
        "encoder": {"backbone": "dinov2_vits14", "intermediate_layers": 2, "dim_out": dims[0]},
        "neck": stack([dims[0] + 2, 2, 2, 2, 2], None),
        "points_head": stack(dims, [None, None, None, None, 3]),
        "mask_head": stack(dims, [None, None, None, None, 1]),
        "scale_head": {"dims": [384, 16, 1]},
        "remap_output": "exp",
        "num_tokens_range": [12, 24],
    }


@pytest.fixture(scope="module")
def tiny_moge():
    pytest.importorskip("moge")
    from moge.model.v2 import MoGeModel

    torch.manual_seed(0)
    model = MoGeModel(**_tiny_moge_config()).eval()
    with torch.no_grad():
        model.mask_head.output_blocks[-1].bias.fill_(8.0)  # sigmoid ~ 1: (almost) every pixel valid
    return model


def _set_focal_sign(model, positive: bool) -> None:
    """Flip the x, y outputs of the points head so MoGe's fitted focal length has the wanted sign."""
    est = MoGeDepth(model=model)
    fx = float(est.infer_raw(_image())["intrinsics"][0, 0, 0])
    if (fx > 0) != positive:
        with torch.no_grad():
            last = model.points_head.output_blocks[-1]
            last.weight[:2].neg_()
            last.bias[:2].neg_()


def test_moge_intrinsics_to_pixels_hand_computed():
    K = torch.tensor([[0.8, 0.0, 0.5], [0.0, 1.2, 0.5], [0.0, 0.0, 1.0]])
    Kp = moge_intrinsics_to_pixels(K, width=64, height=48)
    expected = torch.tensor([[51.2, 0.0, 32.0], [0.0, 57.6, 24.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(Kp, expected)


def test_moge_tiny_model_same_code_path(tiny_moge):
    _set_focal_sign(tiny_moge, positive=True)
    est = MoGeDepth(model=tiny_moge)
    image = _image(48, 64)
    result = est.estimate(image)
    d = result.depth
    assert d.shape == (1, 1, 48, 64) and d.dtype == torch.float32
    assert bool(torch.isfinite(d).all()) and float(d.min()) >= 0 and bool((d > 0).any())
    assert not d.is_inference() and not result.approximate and result.backend == "moge"
    K = result.intrinsics
    assert K is not None and K.shape == (3, 3)
    # principal point at the image centre in pixels; square pixels (MoGe assumes isometry)
    assert torch.allclose(K[:2, 2], torch.tensor([32.0, 24.0]))
    assert float(K[0, 0]) == pytest.approx(float(K[1, 1]), rel=1e-4)
    # MoGe's own point map equals our depth unprojected with our pixel intrinsics (pixel centres +0.5)
    raw = est.infer_raw(image)
    valid = d[0, 0] > 0
    cam = CameraParameters(K, torch.eye(4), width=64, height=48)
    ours = cam.unproject(d)[0]
    theirs = raw["points"][0]
    assert torch.allclose(ours[valid], theirs[valid], rtol=1e-4, atol=1e-5)
    assert torch.equal(valid, raw["mask"][0])


def test_moge_batched_depths_equal_one_at_a_time(tiny_moge):
    est = MoGeDepth(model=tiny_moge)
    g = torch.Generator().manual_seed(3)
    images = torch.rand(5, 3, 48, 64, generator=g)
    batched = est.estimate_depths(images, batch=2)  # chunks of 2, 2 and 1
    assert batched.shape == (5, 1, 48, 64) and batched.device.type == "cpu"
    for i in range(5):
        # batched kernels and the per-image focal/shift fit round differently: 0.015% here
        torch.testing.assert_close(batched[i], est.estimate(images[i : i + 1]).depth[0], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        est.estimate_depths(images[0])


def test_moge_unusable_focal_gives_no_intrinsics(tiny_moge):
    _set_focal_sign(tiny_moge, positive=False)
    result = MoGeDepth(model=tiny_moge).estimate(_image(30, 40))
    assert result.intrinsics is None and "default field of view" in result.message
    assert result.depth.shape == (1, 1, 30, 40) and float(result.depth.min()) >= 0


def test_moge_checkpoint_round_trip(tiny_moge, tmp_path, monkeypatch):
    import huggingface_hub

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    _set_focal_sign(tiny_moge, positive=True)
    ckpt = tmp_path / "model.pt"
    torch.save({"model_config": _tiny_moge_config(), "model": tiny_moge.state_dict()}, ckpt)
    image = _image(24, 32)
    expected = MoGeDepth(model=tiny_moge).estimate(image)
    assert resolve_moge_weights(tmp_path) == ckpt  # a folder holding model.pt names it
    loaded = MoGeDepth(weights=tmp_path).estimate(image)
    assert torch.allclose(loaded.depth, expected.depth)
    assert torch.allclose(loaded.intrinsics, expected.intrinsics)
    assert "model.pt" in loaded.message


def test_moge_weights_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(MOGE_WEIGHTS_ENV, raising=False)
    with pytest.raises(MoGeUnavailableError, match="neither a checkpoint"):
        resolve_moge_weights(tmp_path / "nothing.pt")
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"x")
    monkeypatch.setenv(MOGE_WEIGHTS_ENV, str(ckpt))
    assert resolve_moge_weights() == ckpt
    monkeypatch.setenv(MOGE_WEIGHTS_ENV, str(tmp_path / "gone.pt"))
    with pytest.raises(MoGeUnavailableError, match="does not exist"):
        resolve_moge_weights()
    # offline, nothing cached: the reason says so
    monkeypatch.delenv(MOGE_WEIGHTS_ENV)
    with pytest.raises(MoGeUnavailableError, match="HF_HUB_OFFLINE") as info:
        resolve_moge_weights(device="cpu")
    assert info.value.reason == "offline"
    # a copy in the Hub cache is found offline (the device's variant)
    repo = tmp_path / "hf" / "hub" / "models--Ruicheng--moge-2-vits-normal"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    cached = repo / "snapshots" / "abc123" / "model.pt"
    with zipfile.ZipFile(cached, "w") as zf:  # passes the archive check (a torch file is a zip)
        zf.writestr("archive/data.pkl", b"x")
    assert resolve_moge_weights(device="cpu") == cached
    assert resolve_moge_weights("Ruicheng/moge-2-vits-normal") == cached


def test_moge_bad_checkpoint_and_model(tmp_path):
    pytest.importorskip("moge")
    (tmp_path / "model.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="could not be read"):
        MoGeDepth(weights=tmp_path / "model.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a MoGe checkpoint"):
        MoGeDepth(weights=tmp_path / "other.pt")
    with pytest.raises(ValueError, match="infer"):
        MoGeDepth(model=torch.nn.Linear(2, 2))


def test_default_estimator_falls_back_to_prior(tmp_path, monkeypatch):
    monkeypatch.setenv(MOGE_WEIGHTS_ENV, str(tmp_path / "absent.pt"))
    est = default_depth_estimator()
    assert isinstance(est, LayoutPriorDepth) and est.fallback_reason == "not_found"
    result = est.estimate(_image(8, 8))
    assert result.approximate and "MoGe-2 weights not found" in result.message
