"""Splats of the memories: surfels on the surface, standard files that outside readers take, a reference renderer
that follows gsplat's conventions, and the CLI's clear errors."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from worldstereo.camera import CameraParameters
from worldstereo.cli import main
from worldstereo.splats import Gaussians, read_splats, render_splats, surfels_from_points, write_splats
from worldstereo.splats.gaussians import quats_to_rotmats, rotmats_to_quats
from worldstereo.splats.render import project_gaussians
from worldstereo.splats.surfels import SPACING_FACTOR


def _rays(cam: CameraParameters, step: int = 1) -> torch.Tensor:
    """(H/step, W/step, 3) float64 rays through pixel centres with z = 1."""
    K = cam.K[0].double()
    vv, uu = torch.meshgrid(torch.arange(0, cam.height, step, dtype=torch.float64) + 0.5,
                            torch.arange(0, cam.width, step, dtype=torch.float64) + 0.5, indexing="ij")
    return torch.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], torch.ones_like(uu)], -1)


def _plane(W=64, H=48, tilt_deg=30.0, depth=2.0, step=2):
    """Points of a plane through (0, 0, depth) tilted about x, sampled at every ``step``-th pixel of a camera at the
    origin; returns (camera, points (N, 3), the plane's unit normal towards the camera, its depth per pixel)."""
    cam = CameraParameters.from_fov(math.radians(60), W, H)
    a = math.radians(tilt_deg)
    n = torch.tensor([0.0, math.sin(a), -math.cos(a)], dtype=torch.float64)

    def depth_of(rays: torch.Tensor) -> torch.Tensor:
        return (depth * n[2]) / (rays @ n)

    rays = _rays(cam, step).reshape(-1, 3)
    return cam, (rays * depth_of(rays)[:, None]).float(), n.float(), depth_of(_rays(cam)).float()


def test_quaternions_round_trip_and_match_gsplats_convention():
    from gsplat.cuda._torch_impl import _quat_to_rotmat

    R = torch.linalg.qr(torch.randn(500, 3, 3, generator=torch.Generator().manual_seed(0))).Q
    R = R * torch.linalg.det(R).sign()[:, None, None]
    q = rotmats_to_quats(R)
    assert (q[:, 0] >= 0).all() and torch.allclose(q.norm(dim=1), torch.ones(500), atol=1e-6)
    assert torch.allclose(quats_to_rotmats(q), R, atol=1e-5)
    assert torch.allclose(_quat_to_rotmat(q), quats_to_rotmats(q), atol=1e-6)  # w x y z, as gsplat reads them


def test_surfels_lie_on_the_surface_facing_their_camera_and_cover_it():
    cam, pts, n, truth = _plane()
    f = float(cam.K[0, 0, 0])
    g, info = surfels_from_points(pts, torch.rand(len(pts), 3), torch.ones(len(pts)), torch.zeros(len(pts), 3), f)
    assert info.points == info.splats == len(pts) and info.voxel == 0
    normals = g.rotations[:, :, 2]
    assert (normals @ n > 0.99).float().mean() > 0.98  # the disc's normal is the plane's, towards the camera
    s = g.scales
    assert (s[:, 0] >= s[:, 1] - 1e-7).all() and (s[:, 2] < 0.05 * s[:, 1]).all()  # flat, longer along the slant
    # the radius follows the spacing: SPACING_FACTOR of the mean distance to the 8 nearest neighbours, 1.21 times the
    # spacing of a square grid (here 2 pixels apart, a little more along the tilt)
    spacing = 2 * pts[:, 2] / f
    ratio = s[:, 1] / spacing  # across the slant
    assert abs(float(ratio.median()) - 1.21 * SPACING_FACTOR) < 0.15 * 1.21 * SPACING_FACTOR
    # rendered from the camera that made them, they cover the plane without gaps, at its depth
    r = render_splats(g, cam)
    assert float((r.alpha > 0.5).float().mean()) > 0.99
    inner = r.depth[4:-4, 4:-4], truth[4:-4, 4:-4]
    assert float(((inner[0] - inner[1]).abs() / inner[1]).max()) < 0.02


def test_a_budget_below_the_points_merges_them_into_larger_discs():
    cam, pts, _, _ = _plane(step=1)
    f = float(cam.K[0, 0, 0])
    args = (torch.rand(len(pts), 3), torch.ones(len(pts)), torch.zeros(len(pts), 3), f)
    full, _ = surfels_from_points(pts, *args)
    small, info = surfels_from_points(pts, *args, max_splats=len(pts) // 5, merge_voxel=1e-3)
    assert len(pts) // 8 < len(small) <= len(pts) // 5 and info.voxel > 0
    assert float(small.scales[:, 1].median()) > 1.8 * float(full.scales[:, 1].median())
    assert float((render_splats(small, cam).alpha > 0.5).float().mean()) > 0.98


def test_projection_matches_gsplats_torch_reference():
    from gsplat.cuda._torch_impl import _fully_fused_projection

    gen = torch.Generator().manual_seed(1)
    n = 200
    means = torch.randn(n, 3, generator=gen) * 0.8 + torch.tensor([0.0, 0.0, 3.0])
    R = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen)).Q
    R = R * torch.linalg.det(R).sign()[:, None, None]
    g = Gaussians.from_values(means, torch.rand(n, 3, generator=gen) * 0.2 + 0.01, R, torch.rand(n, generator=gen),
                              torch.rand(n, 3, generator=gen))
    w2c = torch.eye(4)
    w2c[:3, 3] = torch.tensor([0.1, -0.2, 0.3])
    cam = CameraParameters.from_fov(math.radians(55), 80, 60, extrinsics=w2c)
    ours = project_gaussians(g, cam)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        g.means.double(), g.covariances().double(), cam.w2c.double(), cam.K.double(), 80, 60)
    assert torch.allclose(ours.means2d, means2d[0], atol=1e-6)
    assert torch.allclose(ours.conics, conics[0], rtol=1e-6, atol=1e-9)
    assert torch.allclose(ours.depths, depths[0], atol=1e-9)
    assert torch.equal(ours.radii, radii[0].long())


def test_compositing_matches_a_per_pixel_loop():
    """Front to back per pixel, as gsplat's kernel: alpha clamped to 0.999, below 1/255 skipped, stop before the
    transmittance falls to 1e-4; written here as the plain loop."""
    gen = torch.Generator().manual_seed(2)
    n, W, H = 40, 20, 14
    R = torch.linalg.qr(torch.randn(n, 3, 3, generator=gen)).Q
    R = R * torch.linalg.det(R).sign()[:, None, None]
    means = torch.rand(n, 3, generator=gen) * torch.tensor([1.2, 0.9, 1.0]) + torch.tensor([-0.6, -0.45, 2.0])
    opac = torch.rand(n, generator=gen) * 0.3 + 0.7
    g = Gaussians.from_values(means, torch.rand(n, 3, generator=gen) * 0.15 + 0.02, R, opac,
                              torch.rand(n, 3, generator=gen))
    cam = CameraParameters.from_fov(math.radians(50), W, H)
    r = render_splats(g, cam, max_pairs=60)  # small chunks: the transmittance is carried between them
    p = project_gaussians(g, cam)
    order = torch.argsort(p.depths)
    rgb = torch.zeros(H, W, 3, dtype=torch.float64)
    acc = torch.zeros(H, W, dtype=torch.float64)
    for i in range(H):
        for j in range(W):
            T = 1.0
            for k in order.tolist():
                if p.radii[k, 0] == 0:
                    continue
                d = torch.tensor([j + 0.5, i + 0.5], dtype=torch.float64) - p.means2d[k]
                a, b, c = p.conics[k].tolist()
                sigma = 0.5 * (a * d[0] ** 2 + c * d[1] ** 2) + b * d[0] * d[1]
                alpha = min(0.999, float(g.opacities[k]) * math.exp(-float(sigma)))
                if sigma < 0 or alpha < 1 / 255:
                    continue
                if T * (1 - alpha) <= 1e-4:
                    break
                rgb[i, j] += alpha * T * g.colors[k].double()
                acc[i, j] += alpha * T
                T *= 1 - alpha
    assert float(acc.max()) > 0.9 and torch.allclose(r.alpha.double(), acc, atol=1e-5)
    assert torch.allclose(r.rgb.double(), rgb, atol=1e-5)


def _viser_example_ply(path):
    """viser's ``examples/01_scene/09_gaussian_splats.py`` reading of an INRIA .ply (its ``load_ply_file``)."""
    from plyfile import PlyData
    from viser import transforms as tf

    v = PlyData.read(path)["vertex"]
    scales = np.exp(np.stack([v["scale_0"], v["scale_1"], v["scale_2"]], axis=-1))
    wxyzs = np.stack([v["rot_0"], v["rot_1"], v["rot_2"], v["rot_3"]], axis=1)
    colors = 0.5 + 0.28209479177387814 * np.stack([v["f_dc_0"], v["f_dc_1"], v["f_dc_2"]], axis=1)
    opacities = 1.0 / (1.0 + np.exp(-v["opacity"][:, None]))
    Rs = tf.SO3(wxyzs).as_matrix()
    cov = np.einsum("nij,njk,nlk->nil", Rs, np.eye(3)[None, :, :] * scales[:, None, :] ** 2, Rs)
    return np.stack([v["x"], v["y"], v["z"]], axis=-1), colors, opacities, cov


def _viser_example_splat(path):
    """viser's example's reading of an antimatter15 .splat (its ``load_splat_file``)."""
    from viser import transforms as tf

    buf = np.frombuffer(path.read_bytes(), dtype=np.uint8).reshape(-1, 32)
    scales = buf[:, 12:24].copy().view(np.float32)
    Rs = tf.SO3(buf[:, 28:32] / 255.0 * 2.0 - 1.0).as_matrix()
    cov = np.einsum("nij,njk,nlk->nil", Rs, np.eye(3)[None, :, :] * scales[:, None, :] ** 2, Rs)
    return buf[:, 0:12].copy().view(np.float32), buf[:, 24:27] / 255.0, buf[:, 27:28] / 255.0, cov


def test_files_read_back_by_plyfile_and_viser_as_written(tmp_path):
    from plyfile import PlyData

    cam, pts, _, _ = _plane()
    cols = torch.rand(len(pts), 3, generator=torch.Generator().manual_seed(3))
    conf = torch.linspace(0.2, 1.0, len(pts))
    g, _ = surfels_from_points(pts, cols, conf, torch.zeros(len(pts), 3), float(cam.K[0, 0, 0]))
    ply, splat = write_splats(g, tmp_path / "s.ply"), write_splats(g, tmp_path / "s.splat")
    el = PlyData.read(str(ply))["vertex"]
    names = [p.name for p in el.properties]
    assert names == ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                     "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(p.val_dtype in ("f4", "<f4", "float", "float32") for p in el.properties) and len(el) == len(g)
    assert ply.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    centres, rgb, opac, cov = _viser_example_ply(ply)
    assert np.allclose(centres, g.means.numpy(), atol=1e-6)
    assert np.allclose(rgb, cols.numpy(), atol=1e-5)
    assert np.allclose(opac[:, 0], g.opacities.numpy(), atol=1e-5)
    assert np.allclose(cov, g.covariances().numpy(), rtol=1e-4, atol=1e-6 * float(g.covariances().abs().max()))
    assert len(splat.read_bytes()) == 32 * len(g)
    centres, rgb, opac, cov = _viser_example_splat(splat)
    order = np.lexsort(centres.T)  # the .splat is ordered by Morton code: compare as sets
    ref = np.lexsort(g.means.numpy().T)
    assert np.allclose(centres[order], g.means.numpy()[ref], atol=1e-6)
    assert np.abs(rgb[order] - cols.numpy()[ref]).max() <= 1.5 / 255
    assert np.abs(opac[order, 0] - g.opacities.numpy()[ref]).max() <= 1.5 / 255
    # 8-bit rotations: the covariance's size survives exactly, its orientation to a few degrees
    gc = g.covariances().numpy()[ref]
    assert np.allclose(np.trace(cov[order], axis1=1, axis2=2), np.trace(gc, axis1=1, axis2=2), rtol=1e-4)
    back = read_splats(ply)
    assert torch.allclose(back.covariances(), g.covariances(), rtol=1e-4, atol=1e-6 * float(g.covariances().abs().max()))
    assert len(read_splats(splat)) == len(g)


def test_bad_splat_input_gets_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no points"):
        surfels_from_points(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3), 100.0)
    pts = torch.rand(10, 3)
    with pytest.raises(ValueError, match="at least 1"):
        surfels_from_points(pts, pts, torch.ones(10), pts, 100.0, max_splats=0)
    bad = pts.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        surfels_from_points(bad, pts, torch.ones(10), pts, 100.0)
    g, _ = surfels_from_points(pts, pts, torch.ones(10), pts + 5, 100.0)
    with pytest.raises(ValueError, match=r"\.ply or \.splat"):
        write_splats(g, tmp_path / "s.txt")
    (tmp_path / "cloud.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                         b"property float y\nproperty float z\nend_header\n0 0 0\n")
    with pytest.raises(ValueError, match="missing f_dc_0"):
        read_splats(tmp_path / "cloud.ply")
    (tmp_path / "odd.splat").write_bytes(b"\0" * 33)
    with pytest.raises(ValueError, match="multiple of 32"):
        read_splats(tmp_path / "odd.splat")


def test_cli_export_refuses_bad_sources_in_one_line(tmp_path, capsys):
    out = tmp_path / "s.ply"
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("hello")
    cases = [
        (["splats", "export", str(tmp_path / "missing"), "--out", str(out)], "no such file or folder"),
        (["splats", "export", str(tmp_path / "foreign"), "--out", str(out)], "not a world folder"),
        (["splats", "export", str(tmp_path / "foreign"), "--out", str(tmp_path / "s.obj")], r"\.ply or \.splat"),
        (["splats", "export", str(tmp_path / "foreign"), "--out", str(out), "--max-splats", "0"], "positive integer"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1
        assert re.search(message, err), (argv, err)
    assert not out.exists() and not list(tmp_path.glob(".s.*"))


def test_cli_fit_without_cuda_says_why_and_exits_2(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["splats", "fit", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a CUDA GPU" in err


@pytest.mark.cuda
def test_fit_improves_held_out_frames_on_a_gpu(tmp_path):
    from worldstereo.splats.fit import fit_splats, gsplat_kernels

    why = gsplat_kernels()
    if why is not None:
        pytest.skip(why)
    from worldstereo.exports import write_depth_png, write_image_png
    from worldstereo.scenes import get_scene

    view = get_scene("room").start_view(128, 96)
    write_image_png(tmp_path / "image.png", (view.image[0].permute(1, 2, 0) * 255).round().byte().numpy())
    write_depth_png(tmp_path / "depth.png", view.depth[0, 0])
    assert main(["world", "--image", str(tmp_path / "image.png"), "--depth", str(tmp_path / "depth.png"), "--size",
                 "128x96", "--frames", "9", "--trajectories", "2", "--no-ray", "--no-mesh", "--quiet", "--out",
                 str(tmp_path / "D")]) == 0
    r = fit_splats(tmp_path / "D", iterations=300, show_progress=False)
    assert r.held_out >= 2 and r.psnr_after > r.psnr_before and r.output.is_file()


def test_snapshot_of_another_version_is_refused(tmp_path, capsys):
    from worldstereo.config import WorldStereoConfig
    from worldstereo.model import WorldStereo
    from worldstereo.scenes import get_scene

    view = get_scene("room").start_view(64, 48)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, generator="warp", fill="telea", depth_backend="prior"))
    model.start(view.image, view.depth, view.camera)
    model.save(tmp_path / "snap")
    assert main(["splats", "export", str(tmp_path / "snap"), "--out", str(tmp_path / "ok.splat"), "--quiet"]) == 0
    assert len(read_splats(tmp_path / "ok.splat")) == model.ggm.num_points
    meta = json.loads((tmp_path / "snap" / "state.json").read_text())
    meta["version"] = 999
    (tmp_path / "snap" / "state.json").write_text(json.dumps(meta))
    assert main(["splats", "export", str(tmp_path / "snap"), "--out", str(tmp_path / "s.ply")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "version" in err and not (tmp_path / "s.ply").exists()
