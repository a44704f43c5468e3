"""``worldstereo eval fidelity``: coverage of the official paths and agreement with the official renders."""

from __future__ import annotations

import json

import pytest
import torch

from worldstereo.cli import main
from worldstereo.eval.fidelity import _mask_iou, evaluate_example, working_size


def test_mask_iou_by_hand():
    a = torch.zeros(4, 4, dtype=torch.bool)
    b = torch.zeros(4, 4, dtype=torch.bool)
    assert _mask_iou(a, b) == 1.0  # nothing missing in either
    a[0, :] = True  # 4 holes
    b[0, :2] = True
    b[1, 0] = True  # 3 holes, 2 shared
    assert _mask_iou(a, b) == pytest.approx(2 / 5)


def test_working_size_keeps_the_aspect():
    assert working_size(768, 512, 384) == (384, 256)
    assert working_size(1080, 720, 384) == (384, 256)
    w, h = working_size(904, 600, 384)
    assert w % 16 == 0 and h % 16 == 0 and abs(w / h - 904 / 600) < 0.1


def test_reconstruction_example_figures(examples_dir):
    folder = sorted((examples_dir / "reconstruction").iterdir())[0]
    r = evaluate_example(folder, depth_backend="prior", width=128, frames=3, progress=False)
    assert r.kind == "renders" and [p.name for p in r.paths] == ["eloop", "up", "right", "left"]
    assert r.depth == "prior" and r.scale_factor > 0
    for p in r.paths:
        assert p.frames == 3 and len(p.hole_share) == 3 and 0 <= p.mean_hole_share <= 1
        assert 0 <= p.blank_frames <= 2
        assert p.mask_iou is not None and 0 <= p.mask_iou <= 1 and p.render_psnr > 5
    assert r.paths[0].hole_share[0] < 0.05  # frame 0 is the input view


def test_cli_prints_the_table_and_writes_json(capsys, tmp_path, examples_dir):
    folder = sorted((examples_dir / "images").iterdir())[0]
    rc = main(["eval", "fidelity", str(folder), "--depth-backend", "prior", "--width", "64", "--frames", "4",
               "--json", str(tmp_path / "f.json"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "| example |" in out and folder.name in out
    data = json.loads((tmp_path / "f.json").read_text())
    assert data[0]["kind"] == "images" and data[0]["paths"][0]["frames"] == 4
    assert data[0]["paths"][0]["mask_iou"] is None  # no official renders for the images kind
    assert main(["eval", "fidelity", str(tmp_path / "nope"), "--quiet"]) == 2
    assert main(["eval"]) == 2  # the ablation still needs --out
