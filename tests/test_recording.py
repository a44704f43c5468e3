"""``--rerun FILE.rrd``: a recording read back with rerun's own reader holds every frame, the memory's point count, the
cameras by path or trajectory, the layers and the statistics; without rerun-sdk, one error naming the extra."""

from __future__ import annotations

import json

import pytest

from worldstereo.cli import main

W, H = 64, 48
BASE = ["--scene", "room", "--size", f"{W}x{H}", "--fill", "telea", "--quiet"]


def _read(path):
    """entity path -> list of (frame, record batch row) of a recording, by rerun's reader."""
    from rerun.chunk import RrdReader

    out: dict[str, list] = {}
    for chunk in RrdReader(str(path)).stream().to_chunks():
        rb = chunk.to_record_batch()
        frames = rb.column("frame").to_pylist() if "frame" in rb.schema.names else [None] * rb.num_rows
        rows = rb.to_pylist()
        out.setdefault(str(chunk.entity_path), []).extend(zip(frames, rows, strict=True))
    return out


def test_generate_writes_a_recording_rerun_reads_back(tmp_path):
    pytest.importorskip("rerun")
    rrd = tmp_path / "run.rrd"
    assert main(["generate", *BASE, "--preset", "orbit_left", "--frames", "4", "--out", str(tmp_path / "o"),
                 "--rerun", str(rrd)]) == 0
    data = _read(rrd)
    cloud = sorted(data["/world/memory"], key=lambda fr: fr[0])
    assert [f for f, _ in cloud] == [0, 1, 2, 3, 4]  # the start, then every frame
    points = json.loads((tmp_path / "o" / "run.json").read_text())["points"]
    last = cloud[-1][1]
    assert len(last["Points3D:positions"]) == points  # (under the recording's cap) the memory's point count
    totals = {f: row["Scalars:scalars"][0] for f, row in data["/stats/points"]}
    assert totals[4] == points
    assert len(data["/world/cameras/path_1"]) >= 4 and len(data["/layers/render"]) == 4
    assert {f for f, _ in data["/ssm/references"]} == {1, 2, 3, 4}


def test_world_recording_names_its_trajectories(tmp_path):
    pytest.importorskip("rerun")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"rounds": [[{"name": "left", "preset": "orbit_left", "params": {"angle": 20}}],
                                           [{"name": "up", "preset": "orbit_up", "params": {"angle": 15}}]]}))
    from worldstereo.exports import write_image_png
    from worldstereo.scenes import get_scene

    view = get_scene("room").start_view(W, H)
    write_image_png(tmp_path / "room.png", (view.image[0].permute(1, 2, 0) * 255).byte().numpy())
    rrd = tmp_path / "world.rrd"
    assert main(["world", "--image", str(tmp_path / "room.png"), "--plan", str(plan), "--frames", "3", "--size",
                 f"{W}x{H}", "--fill", "telea", "--depth-backend", "prior", "--quiet", "--no-ray",
                 "--out", str(tmp_path / "w"), "--rerun", str(rrd)]) == 0
    data = _read(rrd)
    assert "/world/cameras/left" in data and "/world/cameras/up" in data
    assert sorted({f for f, _ in data["/world/memory"]}) == list(range(0, 7))


def test_without_rerun_one_error_names_the_extra(tmp_path, monkeypatch, capsys):
    import worldstereo.recording as recording

    def missing():
        raise recording.RerunMissingError("--rerun needs rerun-sdk, an optional extra: pip install -e .[rerun]")

    monkeypatch.setattr(recording, "require_rerun", missing)
    out = tmp_path / "o"
    assert main(["generate", *BASE, "--preset", "orbit_left", "--frames", "2", "--out", str(out),
                 "--rerun", str(tmp_path / "x.rrd")]) == 2
    err = capsys.readouterr().err
    assert "pip install -e .[rerun]" in err and err.count("\n") == 1
    assert not out.exists()  # refused before any work
    assert main(["generate", *BASE, "--preset", "orbit_left", "--frames", "2", "--out", str(out),
                 "--rerun", str(tmp_path / "x.txt")]) == 2
