"""Panoramas: the equirectangular convention, the official bank, split and merge, depth at one scale,
memories seeded from a bank, the CLI, and bad input.

The synthetic panorama is the room ray-cast exactly per direction (:mod:`worldstereo.panorama.synthetic`);
perspective renders of the same cameras are the ground truth for its split views.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from worldstereo import trajectory
from worldstereo.camera import CameraParameters
from worldstereo.cli import main
from worldstereo.geometry.dense_splat import splat_dense
from worldstereo.model import WorldStereo, WorldStereoConfig
from worldstereo.panorama.bank import merge_views, official_bank_cameras, split_panorama
from worldstereo.panorama.depth import align_view_scales, box_prior_depths
from worldstereo.panorama.equirect import PanoramaError, direction_to_pixel, directions, pixel_to_direction, range_to_z
from worldstereo.panorama.files import read_pano_bank, write_pano_bank
from worldstereo.panorama.synthetic import render_panorama
from worldstereo.scenes import get_scene

PANO_WIDTH = 1024


@pytest.fixture(scope="module")
def room_pano():
    """The room's exact panorama, 1024 x 512 (each pixel averages 2 x 2 rays)."""
    return render_panorama("room", PANO_WIDTH)


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    err = err[mask] if mask is not None else err
    return float(10 * np.log10(255.0**2 / max(err.mean(), 1e-12)))


def _bank_of(pano, width: int, height: int):
    """The bank of ``pano`` at ``width x height``: views (N, h, w, 3) uint8, cameras, camera-z depths (N, h, w)."""
    cams = official_bank_cameras(width, height)
    views = split_panorama(pano.image, cams)
    ranges = torch.from_numpy(split_panorama(pano.range, cams, nearest=True))
    depths = range_to_z(ranges, cams._camera_directions()[0].float()).numpy()
    return views, cams, depths


# ---------------------------------------------------------------------------------------------- convention
def test_equirect_convention_centre_column_looks_along_minus_x_and_right_is_plus_y():
    w, h = 360, 180
    centre = pixel_to_direction(np.array(w / 2), np.array(h / 2), w, h)
    np.testing.assert_allclose(centre, [-1.0, 0.0, 0.0], atol=1e-12)
    d = pixel_to_direction(np.array(270.0), np.array(45.0), w, h)  # lon 90, lat 45
    np.testing.assert_allclose(d, [0.0, math.sqrt(0.5), math.sqrt(0.5)], atol=1e-9)
    # column x, row y: lon = (x + 0.5)/W*360 - 180, lat = 90 - (y + 0.5)/H*180
    grid = directions(w, h).double().numpy()
    lon, lat = np.radians((200 + 0.5) / w * 360 - 180), np.radians(90 - (30 + 0.5) / h * 180)
    expected = np.cos(lat) * np.array([-np.cos(lon), np.sin(lon), 0.0]) + np.sin(lat) * np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(grid[30, 200], expected, atol=1e-6)
    x, y = direction_to_pixel(np.array([0.0, 1.0, 0.0]), w, h)  # +Y: a quarter turn right of the centre
    assert x == pytest.approx(270.0) and y == pytest.approx(90.0)
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x2, y2 = direction_to_pixel(pixel_to_direction(xs, ys, w, h), w, h)
    np.testing.assert_allclose(x2, xs, atol=1e-9)
    np.testing.assert_allclose(y2, ys, atol=1e-9)


def test_official_bank_cameras_match_the_published_layout():
    cams = official_bank_cameras()
    assert len(cams) == 27 and (cams.width, cams.height) == (832, 480)
    K = cams.K[0]
    assert float(K[0, 0]) == pytest.approx(240.18, abs=0.01) and float(K[1, 1]) == pytest.approx(240.0)
    assert (float(K[0, 2]), float(K[1, 2])) == (416.0, 240.0)
    torch.testing.assert_close(cams.camera_centers, torch.zeros(27, 3, dtype=torch.float64))
    forward = cams.c2w[:, :3, 2]
    right = cams.c2w[:, :3, 0]
    torch.testing.assert_close(forward[0], torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(right[0], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    assert float(forward[1, 2]) == pytest.approx(0.447, abs=1e-3) and float(forward[2, 2]) == pytest.approx(-0.447, abs=1e-3)
    torch.testing.assert_close(forward[3], torch.tensor([-0.766, 0.643, 0.0], dtype=torch.float64), atol=1e-3, rtol=0)
    # rows: 3-10 level, 11-18 up, 19-26 down, each at 40-degree steps turning right
    yaw = np.degrees(np.arctan2(forward[:, 1].numpy(), -forward[:, 0].numpy())) % 360
    for row, sign in ((range(3, 11), 0), (range(11, 19), 1), (range(19, 27), -1)):
        np.testing.assert_allclose(yaw[list(row)], np.arange(1, 9) * 40.0, atol=1e-6)
        assert all(np.sign(round(float(forward[i, 2]), 6)) == sign for i in row)


def test_a_marker_at_plus_y_is_right_of_the_panorama_centre_and_of_view_0000():
    """A red marker on the +Y side (within view 0000's 120 degrees) and a blue one on the -Y side: not mirrored."""
    w, h = 512, 256
    pano = np.zeros((h, w, 3), np.uint8)
    for side, colour in ((+1, (255, 0, 0)), (-1, (0, 0, 255))):
        x, y = direction_to_pixel(np.array([-1.0, 0.8 * side, 0.1]), w, h)
        pano[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4] = colour
        assert (x > w / 2) == (side > 0)  # +Y right of the panorama's centre column
    view0 = split_panorama(pano, official_bank_cameras(208, 120)[0:1])[0]
    red = np.argwhere(view0[..., 0] > 128)
    blue = np.argwhere(view0[..., 2] > 128)
    assert red.size and blue.size
    assert red[:, 1].mean() > 208 / 2 + 30 and blue[:, 1].mean() < 208 / 2 - 30  # +Y on the image right
    assert red[:, 0].mean() < 60 and blue[:, 0].mean() < 60  # z > 0 is above the horizon


# ---------------------------------------------------------------------------------------------- split and merge
def test_split_views_equal_direct_perspective_renders(room_pano):
    cams = official_bank_cameras(104, 60)
    idx = [0, 1, 2, 3, 7, 11, 16, 19, 24]
    views = split_panorama(room_pano.image, cams[idx])
    truth = get_scene("room").render(room_pano.scene_cameras(cams[idx]), antialias=8).image
    truth = (truth.permute(0, 2, 3, 1).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    scores = [_psnr(v, t) for v, t in zip(views, truth, strict=True)]
    assert min(scores) >= 35.0, scores


def test_panorama_bank_panorama_round_trip(room_pano):
    views, cams, _ = _bank_of(room_pano, 832, 480)
    back = merge_views(views, cams, PANO_WIDTH)
    # the bank reaches 71.6 degrees up and down: compare where a view holds the direction
    lat = 90 - (np.arange(PANO_WIDTH // 2) + 0.5) / (PANO_WIDTH // 2) * 180
    covered = np.abs(lat) < 70
    mask = np.broadcast_to(covered[:, None, None], back.shape)
    assert _psnr(back, room_pano.image, mask) >= 30.0


def test_bank_files_round_trip(tmp_path, room_pano):
    views, cams, depths = _bank_of(room_pano, 208, 120)
    write_pano_bank(tmp_path / "pano_bank", views, cams, depths)
    bank = read_pano_bank(tmp_path)  # an example folder holding pano_bank/
    assert len(bank) == 27 and bank.images.dtype == np.uint8
    np.testing.assert_array_equal(bank.images, views)
    torch.testing.assert_close(bank.cameras.w2c, cams.w2c, atol=1e-12, rtol=0)
    np.testing.assert_allclose(bank.depths, depths, atol=6e-4)  # millimetre PNGs
    data = json.loads((tmp_path / "pano_bank" / "cameras.json").read_text())
    assert sorted(data) == [f"{i:04d}" for i in range(27)] and set(data["0000"]) == {"intrinsic", "extrinsic"}


# ---------------------------------------------------------------------------------------------- depth
def test_view_scales_are_recovered_by_least_squares_with_outliers_rejected(room_pano):
    _, cams, depths = _bank_of(room_pano, 104, 60)
    d = torch.from_numpy(depths).unsqueeze(1)
    rng = np.random.default_rng(3)
    true = np.exp(rng.normal(0, 0.4, 27))
    noisy = d * torch.from_numpy(true).float().view(-1, 1, 1, 1)
    noisy = noisy * torch.from_numpy(rng.normal(1, 0.01, noisy.shape)).float()
    wild = torch.from_numpy(rng.random(noisy.shape) < 0.05)
    noisy = torch.where(wild, noisy * 5.0, noisy)  # 5% outliers
    fit = align_view_scales(noisy, cams)
    recovered = fit.scales * true
    np.testing.assert_allclose(recovered / recovered.mean(), 1.0, atol=0.01)
    assert fit.rejected > 0 and fit.pairs >= 26


def test_room_prior_agrees_at_the_seams():
    cams = official_bank_cameras(104, 60)
    z = box_prior_depths(cams)
    assert bool((z > 0).all())
    fit = align_view_scales(z, cams)  # one consistent prior: nothing to correct
    np.testing.assert_allclose(fit.scales, 1.0, atol=1e-3)
    assert fit.residual < 0.02


# ---------------------------------------------------------------------------------------------- memories
def _small_config(**kw) -> WorldStereoConfig:
    return WorldStereoConfig(width=64, height=48, generator="warp", fill="telea", depth_backend="prior", **kw)


@pytest.mark.parametrize("out", [5, 13])
def test_left_out_view_is_rendered_from_the_others(room_pano, out):
    """The GGM of 26 views, rendered as frames render it (gap-free splat), at the 27th view's camera.

    Half the official size (416 x 240). View 0000 itself scores lower (26.9 dB): it faces the finest
    textures (ceiling tiles, wallpaper at grazing angles), where a nearest-point render aliases; the
    geometry is exact there too (no parallax at one centre)."""
    views, cams, depths = _bank_of(room_pano, 416, 240)
    keep = [i for i in range(27) if i != out]
    model = WorldStereo(_small_config())
    info = model.start_views(views[keep], cams[keep], depths[keep])
    assert info.kind == "views" and info.num_views == 26 and not info.approximate
    r = splat_dense(model.ggm.point_cloud, model.ggm.point_colors, cams[out].to(dtype=torch.float32))
    image = (r.image[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    hit = ~r.hole_mask[0, 0].numpy()
    assert hit.mean() > 0.97
    assert _psnr(image, views[out], np.broadcast_to(hit[..., None], image.shape)) >= 30.0


def test_panorama_start_seeds_both_memories_and_paths_draw_on_bank_views(room_pano):
    model = WorldStereo(_small_config())
    info = model.start_panorama(room_pano.image)
    assert info.kind == "panorama" and info.num_views == 29 and info.approximate  # the bank and its two poles
    assert "panorama" in info.message and "exact at any depth" in info.message and "room prior" in info.message
    assert [k.label for k in model.keyframes] == [f"bank view {i:04d}" for i in range(27)] + ["view up", "view down"]
    assert model.frame_counter == 29 and model.ssm.num_entries == 29 * 12  # 64x48 / 16 px tokens
    # the GGM points lie on the prior box around the centre (a merge at a seam averages two neighbours:
    # at the box's edges that is a little inside it)
    pts = model.ggm.point_cloud
    on_box = torch.stack([pts[:, 0].abs() - 2.5, pts[:, 1].abs() - 2.5, pts[:, 2] - 1.5, -pts[:, 2] - 1.5], 1).amax(1)
    assert float((on_box.abs() < 1e-3).float().mean()) > 0.98 and float(on_box.abs().max()) < 0.05
    # paths start at the centre looking along view 0000, with square pixels and 90 degrees vertical
    start = model.start_camera
    torch.testing.assert_close(start.c2w[0, :3, 2], torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    assert float(start.fov_y[0]) == pytest.approx(math.pi / 2) and float(start.K[0, 0, 0]) == float(start.K[0, 1, 1])
    steps = list(model.generate("look_around", num_frames=5))
    assert steps[0].frame_id == 29
    refs = {f for s in steps for f in s.references}
    assert refs and refs <= set(range(29)) | {s.frame_id for s in steps}
    assert all(s.hole_share < 0.05 for s in steps)  # looking around from the centre: everything is known
    named = {model.keyframe_by_id(f).name for f in refs if f < 29}
    assert named and all(n.startswith("bank view ") for n in named)


def test_panorama_start_with_exact_range_matches_the_truth(room_pano):
    model = WorldStereo(_small_config())
    info = model.start_panorama(room_pano.image, depth=room_pano.range)
    assert info.depth_source == "given" and not info.approximate
    # scene depth is the panorama's median distance over the sphere (pixels weighted by their solid angle)
    h = room_pano.range.shape[0]
    lat = np.radians(90 - (np.arange(h) + 0.5) / h * 180)
    weight = np.broadcast_to(np.cos(lat)[:, None], room_pano.range.shape)
    order = np.argsort(room_pano.range.ravel())
    cum = np.cumsum(weight.ravel()[order])
    median = float(room_pano.range.ravel()[order][np.searchsorted(cum, cum[-1] / 2)])
    assert model.scene_depth == pytest.approx(median, rel=0.03)
    # a GGM point projects back onto a pixel of the same colour in a split view
    cams = official_bank_cameras(208, 120)
    views = split_panorama(room_pano.image, cams[:1])
    uv, z = cams[0].project(model.ggm.point_cloud.double())
    u, v = uv[0, :, 0].numpy(), uv[0, :, 1].numpy()
    inside = (z[0].numpy() > 0) & (u >= 1) & (u < 207) & (v >= 1) & (v < 119)
    cols = (model.ggm.point_colors[torch.from_numpy(inside)] * 255).numpy()
    pix = views[0][v[inside].astype(int), u[inside].astype(int)].astype(np.float64)
    assert np.median(np.abs(cols - pix).mean(1)) < 12
    # the poles are known too (a panorama holds them): looking straight up shows no hole
    up = trajectory.preset("pan_up", model.start_camera, 3, scene_depth=model.scene_depth, angle=89.0)
    assert [s.hole_share < 0.02 for s in model.generate(up)] == [True, True, True]


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_panoramas_and_banks_get_one_clear_message(tmp_path, room_pano):
    model = WorldStereo(_small_config())
    with pytest.raises(PanoramaError, match="not an equirectangular 2:1 image.*--image"):
        model.start_panorama(np.zeros((100, 150, 3), np.uint8))
    views, cams, depths = _bank_of(room_pano, 104, 60)
    cases = {}

    def bank(name, n=27, d=None):
        root = tmp_path / name
        write_pano_bank(root, views[:n], cams[:n], d)
        return root

    root = bank("missing_image")
    (root / "images" / "0004.png").unlink()
    cases[root] = "missing 0004.png"
    root = bank("missing_key")
    data = json.loads((root / "cameras.json").read_text())
    del data["0003"]
    (root / "cameras.json").write_text(json.dumps(data))
    cases[root] = "keys must be 0000"
    root = bank("sizes")
    from PIL import Image

    Image.fromarray(np.zeros((30, 52, 3), np.uint8)).save(root / "images" / "0002.png")
    cases[root] = "same size"
    root = bank("nan")
    data = json.loads((root / "cameras.json").read_text())
    data["0001"]["extrinsic"][0][0] = float("nan")
    (root / "cameras.json").write_text(json.dumps(data).replace("NaN", "NaN"))
    cases[root] = "NaN or inf"
    root = bank("shear")
    data = json.loads((root / "cameras.json").read_text())
    data["0001"]["extrinsic"][0][1] += 0.5
    (root / "cameras.json").write_text(json.dumps(data))
    cases[root] = "not a rotation"
    cases[bank("one", n=1)] = "at least 2 views"
    root = bank("depth_size", d=depths)
    from worldstereo.exports import write_depth_png

    write_depth_png(root / "depths" / "0000.png", np.ones((10, 10), np.float32))
    cases[root] = "depth 0000.png is 10x10"
    for root, message in cases.items():
        with pytest.raises(PanoramaError, match=message):
            read_pano_bank(root)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_splits_a_panorama_into_the_official_layout(tmp_path, room_pano):
    from worldstereo.exports import write_depth_png, write_image_png

    small = render_panorama("room", 256, antialias=1)
    write_image_png(tmp_path / "pano.png", small.image)
    write_depth_png(tmp_path / "range.png", small.range)
    rc = main(["panorama", "split", str(tmp_path / "pano.png"), "--depth", str(tmp_path / "range.png"),
               "--out", str(tmp_path / "bank")])
    assert rc == 0
    bank = read_pano_bank(tmp_path / "bank")
    assert len(bank) == 27 and bank.images.shape[1:] == (480, 832, 3) and bank.depths is not None
    torch.testing.assert_close(bank.cameras.w2c, official_bank_cameras().w2c, atol=1e-9, rtol=0)
    # a bank depth is camera z: its centre pixel equals the range along view 0000's axis
    mid = small.range[64, 128]
    assert float(bank.depths[0, 240, 416]) == pytest.approx(float(mid), rel=0.02)


def test_cli_generates_from_a_panorama_and_from_a_bank(tmp_path, room_pano, capsys):
    from worldstereo.exports import write_image_png

    small = render_panorama("room", 512, antialias=1)
    write_image_png(tmp_path / "pano.png", small.image)
    rc = main(["generate", "--panorama", str(tmp_path / "pano.png"), "--preset", "look_around", "--frames", "4",
               "--size", "64x48", "--fill", "telea", "--generator", "warp", "--depth-backend", "prior",
               "--out", str(tmp_path / "a"), "--quiet"])
    assert rc == 0
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["complete"] and run["input_kind"] == "panorama" and run["views"] == 29 and run["approximate_geometry"]
    assert len(list((tmp_path / "a" / "frames").glob("*.png"))) == 4
    views, cams, depths = _bank_of(small, 208, 120)
    write_pano_bank(tmp_path / "ex" / "pano_bank", views, cams, depths)
    path = CameraParameters.from_fov(90.0, 64, 48, degrees=True, extrinsics=cams.w2c[[0, 3, 4]].float())
    from worldstereo.formats import write_camera_json

    write_camera_json(tmp_path / "path.json", path.to(dtype=torch.float64))
    rc = main(["generate", "--panorama", str(tmp_path / "ex"), "--camera", str(tmp_path / "path.json"),
               "--size", "64x48", "--fill", "telea", "--generator", "warp", "--out", str(tmp_path / "b"), "--quiet"])
    assert rc == 0
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["input_kind"] == "views" and run["depth_source"] == "given"
    assert len(list((tmp_path / "b" / "frames").glob("*.png"))) == 3  # every pose generated, none is the input


def test_cli_refuses_a_photo_as_a_panorama_and_writes_nothing(tmp_path, capsys):
    from worldstereo.exports import write_image_png

    write_image_png(tmp_path / "photo.png", np.zeros((48, 64, 3), np.uint8))
    rc = main(["generate", "--panorama", str(tmp_path / "photo.png"), "--preset", "look_around",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "not an equirectangular 2:1 image" in err and "--image" in err
    assert not (tmp_path / "o").exists()
