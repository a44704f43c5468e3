"""The memory ablation end to end (a reduced quick setting) and its report."""

from __future__ import annotations

import argparse
import json
import math

import pytest
from PIL import Image

from worldstereo.eval.ablation import (
    ABLATION_CONFIGS,
    EvalSettings,
    add_eval_arguments,
    eval_command,
    reference_paths,
    run_eval,
)
from worldstereo.scenes import get_scene

# the quick setting (room, 256x192, 8-frame paths) shrunk further to keep the suite fast
SMALL = EvalSettings(scenes=("room",), width=192, height=144, frames_per_path=6, quick=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_eval(tmp_path_factory.mktemp("eval"), settings=SMALL, progress=False)


def test_memories_improve_in_the_predicted_order(report):
    scene = report.scenes[0]
    names = [c.name for c in ABLATION_CONFIGS]
    revisited = [scene.config(n).psnr_revisited for n in names]
    consistency = [scene.config(n).consistency_psnr for n in names]
    assert revisited[0] < revisited[1] < revisited[2], revisited
    assert consistency[0] < consistency[1] < consistency[2], consistency
    assert report.ordering_holds("psnr_revisited") and report.ordering_holds("consistency_psnr")
    # margins, not ties: the GGM is worth several dB, the SSM at least a fraction of one
    assert revisited[1] - revisited[0] > 2.0 and consistency[1] - consistency[0] > 2.0
    assert revisited[2] - revisited[1] > 0.3 and consistency[2] - consistency[1] > 0.3


def test_results_are_consistent_with_the_configs(report):
    scene = report.scenes[0]
    n_frames = 4 * SMALL.frames_per_path
    for res in scene.configs:
        assert len(res.frames) == n_frames
        assert [f.path for f in res.frames[:: SMALL.frames_per_path]] == ["eloop", "up", "right", "left"]
        assert all(0 < f.revisited_fraction <= 1 for f in res.frames[1:])
        assert res.consistency_pixels > 0 and math.isfinite(res.consistency_psnr)
        assert res.camera is not None and res.camera.num_pairs == 4 * (SMALL.frames_per_path - 1)
    no_mem, ggm, ssm = (scene.config(c.name) for c in ABLATION_CONFIGS)
    # without memory the GGM keeps the input view's points; with it, it grows; only the SSM arm holds tokens
    assert {f.ggm_points for f in no_mem.frames} == {SMALL.width * SMALL.height}
    assert ggm.final_points > no_mem.final_points
    assert no_mem.frames[-1].ssm_entries == 0 == ggm.frames[-1].ssm_entries and ssm.frames[-1].ssm_entries > 0
    # the input view's exact depth makes the initial cloud precise; generated (filled) points are kept
    # out of the reconstruction, so the growing GGM stays as precise as the input view
    tau = no_mem.tau
    assert no_mem.reconstruction.at(tau).precision > 0.99
    assert ggm.reconstruction.at(tau).precision > 0.99
    assert ggm.reconstruction.at(tau).recall >= no_mem.reconstruction.at(tau).recall - 0.01
    # the eloop ends on the input camera: with memory it comes back nearly exactly
    last_eloop = SMALL.frames_per_path - 1
    assert ssm.frames[last_eloop].psnr > 30.0 > no_mem.frames[last_eloop].psnr


def test_report_files_end_with_the_ablation_table(report):
    out = report.out_dir
    text = (out / "report.md").read_text()
    lines = text.strip().splitlines()
    assert lines[-5].startswith("| config | PSNR")
    assert [ln.split("|")[1].strip() for ln in lines[-3:]] == [c.name for c in ABLATION_CONFIGS]
    assert "Predicted ordering in revisited-region PSNR holds" in text
    data = json.loads((out / "results.json").read_text())
    assert data["ordering"] == {"psnr_revisited": True, "consistency_psnr": True}
    assert data["scenes"][0]["configs"]["+GGM+SSM"]["consistency_psnr"] == pytest.approx(
        report.scenes[0].config("+GGM+SSM").consistency_psnr
    )
    html = (out / "charts.html").read_text()
    assert html.count("Plotly.newPlot") == len(list(out.glob("*.png")))
    for png in out.glob("*.png"):
        with Image.open(png) as im:
            assert im.size == (900, 520)
            assert len(im.getcolors(maxcolors=1 << 16) or range(999)) > 3  # drawn, not blank


def test_reference_paths_in_reference_order():
    scene = get_scene("room")
    cam = scene.start_camera(64, 48)
    paths = reference_paths(cam, scene.scene_depth, SMALL)
    assert [p.name for p in paths] == ["eloop", "up", "right", "left"]
    for p in paths:
        assert len(p.cameras) == SMALL.frames_per_path
        assert float((p.cameras.w2c[0] - cam.w2c[0]).abs().max()) < 1e-5  # every path leaves from the input view
    # right and left orbits mirror each other: camera centres opposite in x
    right, left = paths[2].cameras.camera_centers, paths[3].cameras.camera_centers
    assert float(right[-1, 0]) == pytest.approx(-float(left[-1, 0]), rel=1e-4) and float(right[-1, 0]) > 0


def test_eval_arguments_and_bad_options(tmp_path, capsys):
    parser = add_eval_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--quick", "--out", str(tmp_path)])
    assert args.quick and args.out == str(tmp_path)
    assert eval_command(parser.parse_args(["--out", str(tmp_path), "--size", "100x"])) == 2
    assert eval_command(parser.parse_args(["--out", str(tmp_path), "--size", "100x50"])) == 2
    assert eval_command(parser.parse_args(["--out", str(tmp_path), "--scenes", "moon"])) == 2
    assert "moon" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="frames_per_path"):
        EvalSettings(frames_per_path=2)
