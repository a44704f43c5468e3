"""What a finished world writes beside its dataset, read back by the tools users open it with: the splats
(plyfile), the COLMAP model (pycolmap: a point projects to a pixel of its depth and colour) and the mesh
(trimesh: its vertices lie on the scene's true surface)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from worldstereo.cli import main
from worldstereo.config import WorldStereoConfig
from worldstereo.model import WorldStereo
from worldstereo.scenes import get_scene
from worldstereo.splats import read_splats
from worldstereo.world import Trajectory, WorldPlan, build_world
from worldstereo.world.dataset import read_dataset


@pytest.fixture(scope="module")
def room_world(tmp_path_factory):
    """The room from its exact start view, orbits of 10 degrees either way (5 frames each), at 128 x 96."""
    out = tmp_path_factory.mktemp("extras") / "D"
    view = get_scene("room").start_view(128, 96)

    def make_model(start: bool) -> WorldStereo:
        model = WorldStereo(WorldStereoConfig(width=128, height=96, generator="warp", fill="telea",
                                              depth_backend="prior"))
        if start:
            model.start(view.image, view.depth, view.camera)
        return model

    plan = WorldPlan(((Trajectory("left", "orbit_left", {"angle": 10.0}),
                       Trajectory("right", "orbit_right", {"angle": 10.0})),), 5)
    build_world(plan, out, {"input": "room"}, make_model, progress=False)
    return out


def test_the_world_records_its_exports(room_world):
    ex = json.loads((room_world / "world.json").read_text())["exports"]
    assert set(ex) == {"splats", "colmap", "mesh"}
    splats = read_splats(room_world / "world" / "splats.ply")
    assert len(splats) == ex["splats"]["splats"] == ex["splats"]["points"] > 10_000
    frames = read_dataset(room_world / "world")
    assert ex["colmap"]["images"] == len(frames) and ex["mesh"]["frames"] == len(frames)
    assert ex["mesh"]["truncation"] == pytest.approx(4 * ex["mesh"]["voxel"])


def test_colmap_model_reads_back_and_a_point_projects_to_its_depth_and_colour(room_world):
    import pycolmap

    rec = pycolmap.Reconstruction(str(room_world / "world" / "sparse" / "0"))
    frames = read_dataset(room_world / "world")
    by_name = {im.name: im for im in rec.images.values()}
    assert sorted(by_name) == sorted(p.name for p in (room_world / "world" / "images").iterdir())
    ply_points = len(np.asarray(__import__("trimesh").load(room_world / "world" / "pointcloud.ply").vertices))
    assert rec.num_points3D() == ply_points
    xyz = np.stack([p.xyz for p in rec.points3D.values()])
    rgb = np.stack([p.color for p in rec.points3D.values()]).astype(np.float64)
    for f in frames[:: max(1, len(frames) // 4)]:
        im = by_name[f.image_path.name]
        cam = rec.cameras[im.camera_id]
        assert cam.model == pycolmap.CameraModelId.PINHOLE and (cam.width, cam.height) == (f.camera.width, f.camera.height)
        K = f.camera.K[0].double().numpy()
        assert np.allclose(cam.params, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        T = im.cam_from_world().matrix()
        assert np.allclose(T, f.camera.w2c[0].double().numpy()[:3], atol=1e-6)
        pc = xyz @ T[:, :3].T + T[:, 3]
        uv = pc @ K.T
        front = pc[:, 2] > 1e-6
        u = np.floor(uv[front, 0] / uv[front, 2]).astype(int)
        v = np.floor(uv[front, 1] / uv[front, 2]).astype(int)
        inside = (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
        depth = np.asarray(Image.open(f.depth_path), np.float64) / 1000.0
        image = np.asarray(Image.open(f.image_path).convert("RGB"), np.float64)
        d = depth[v[inside], u[inside]]
        z = pc[front][inside, 2]
        known = d > 0
        same = np.abs(z[known] - d[known]) < 0.01 * d[known]  # the points the frame shows (not those hidden)
        assert same.sum() > 0.25 * known.sum(), (f.stem, same.sum(), known.sum())
        colour = np.abs(rgb[front][inside][known][same] - image[v[inside], u[inside]][known][same]).mean(axis=1)
        assert np.median(colour) < 12, (f.stem, np.median(colour))


def test_mesh_vertices_lie_on_the_true_surface(room_world):
    import trimesh
    from scipy.spatial import cKDTree

    ex = json.loads((room_world / "world.json").read_text())["exports"]["mesh"]
    mesh = trimesh.load(room_world / "world" / "mesh.glb", force="mesh")
    v = np.asarray(mesh.vertices)
    assert len(v) == ex["vertices"] > 5_000 and len(mesh.faces) == ex["faces"]
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    assert colours.std() > 10  # the frames' colours, not one grey
    truth = get_scene("room").sample_surface(3_000_000)
    d, _ = cKDTree(truth.points.numpy()).query(v)
    assert np.mean(d < 1.5 * ex["voxel"]) >= 0.95, np.mean(d < 1.5 * ex["voxel"])


def test_cli_world_no_mesh_and_splats_from_every_source(tmp_path, capsys):
    from worldstereo.exports import write_depth_png, write_image_png

    view = get_scene("room").start_view(64, 48)
    write_image_png(tmp_path / "image.png", (view.image[0].permute(1, 2, 0) * 255).round().byte().numpy())
    write_depth_png(tmp_path / "depth.png", view.depth[0, 0])
    base = ["--size", "64x48", "--frames", "3", "--quiet"]
    assert main(["world", "--image", str(tmp_path / "image.png"), "--depth", str(tmp_path / "depth.png"),
                 "--trajectories", "1", "--no-mesh", "--max-splats", "2000", "--out", str(tmp_path / "D"), *base]) == 0
    world = tmp_path / "D" / "world"
    assert (world / "splats.ply").is_file() and (world / "sparse" / "0" / "images.bin").is_file()
    assert not (world / "mesh.glb").exists()
    assert len(read_splats(world / "splats.ply")) <= 2000
    assert main(["generate", "--image", str(tmp_path / "image.png"), "--depth", str(tmp_path / "depth.png"),
                 "--preset", "orbit_left", "--out", str(tmp_path / "G"), *base]) == 0
    with zipfile.ZipFile(tmp_path / "snap.zip", "w") as zf:
        for name in ("state.json", "state.safetensors"):
            zf.write(tmp_path / "G" / "snapshot" / name, f"snapshot/{name}")
    for src, out in [(tmp_path / "D", "w.splat"), (tmp_path / "G", "g.ply"), (tmp_path / "G" / "snapshot", "s.ply"),
                     (tmp_path / "snap.zip", "z.ply")]:
        capsys.readouterr()
        assert main(["splats", "export", str(src), "--out", str(tmp_path / out)]) == 0, capsys.readouterr().err
        assert f"-> {tmp_path / out}" in capsys.readouterr().out
        assert len(read_splats(tmp_path / out)) > 1000
    # the run's and its snapshot's splats are the same memories
    a, b = read_splats(tmp_path / "g.ply"), read_splats(tmp_path / "z.ply")
    assert torch.equal(a.means, b.means)
