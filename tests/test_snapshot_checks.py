"""Hostile snapshots: every tampering gives one clear ValueError, and a good snapshot still loads exactly."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from worldstereo import limits
from worldstereo import snapshot as snapshot_module
from worldstereo.model import WorldStereo, WorldStereoConfig
from worldstereo.scenes import get_scene
from worldstereo.snapshot_checks import SnapshotError, extract_snapshot_zip


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    view = get_scene("room").start_view(64, 48)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, fill="telea"))
    model.start(view.image, view.depth, view.camera)
    list(model.generate("orbit_right", 3))
    return model.save(tmp_path_factory.mktemp("snap") / "snapshot")


def _copy(snapshot: Path, tmp_path: Path) -> Path:
    d = tmp_path / "s"
    shutil.copytree(snapshot, d)
    return d


def _edit_meta(d: Path, **changes) -> None:
    meta = json.loads((d / "state.json").read_text())
    for k, v in changes.items():
        if k.startswith("config."):
            meta["config"][k[7:]] = v
        else:
            meta[k] = v
    (d / "state.json").write_text(json.dumps(meta))


def _edit_tensors(d: Path, fn) -> None:
    """Edit the snapshot's tensors as they are meant (compressed ones decoded), and store them all raw."""
    meta = json.loads((d / "state.json").read_text())
    t = snapshot_module._decoded(load_file(str(d / "state.safetensors")), meta)
    fn(t)
    save_file(t, str(d / "state.safetensors"))
    meta["encoded"] = {}
    (d / "state.json").write_text(json.dumps(meta))


def test_a_good_snapshot_loads_exactly(snapshot):
    m = WorldStereo.load(snapshot)
    assert m.ggm.num_points > 0 and len(m.keyframes) >= 1


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(version=99), "unsupported snapshot version"),
        (dict(frame_counter=-1), "frame_counter"),
        (dict(num_paths=10**9), "paths, more than the limit"),
        (dict(scene_depth=float("nan")), "scene_depth"),
        (dict(keyframes=[{"frame_id": "x"}]), "keyframes"),
        (dict(config="not an object"), "config must be an object"),
        ({"config.memory_size": 10**9}, "memory_size"),
        ({"config.width": 100000}, "width"),
        ({"config.width": 128}, "the config's size needs"),
        ({"config.no_such_key": 1}, "bad config"),
        ({"config.generator": "diffusion"}, "bad config"),
    ],
)
def test_bad_metadata_and_configs_are_refused(snapshot, tmp_path, change, message):
    d = _copy(snapshot, tmp_path)
    _edit_meta(d, **change)
    with pytest.raises(SnapshotError, match=message):
        WorldStereo.load(d)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.__setitem__("ggm._pos", t["ggm._pos"].double()), "ggm._pos"),
        (lambda t: t.__setitem__("ggm._rgb", t["ggm._rgb"][:-1].clone()), "rows for"),
        (lambda t: t.__setitem__("ssm.features", torch.zeros(3, 3)), "ssm.features"),
        (lambda t: t.__setitem__("ssm.slots", t["ssm.slots"] + 10**6), "ssm.slots"),
        (lambda t: t.__setitem__("ssm.write_step", t["ssm.write_step"][:-1].clone()), "ssm.write_step"),
        (lambda t: t.__setitem__("keyframe.0.image", t["keyframe.0.image"][:, :-1].clone()), "keyframe.0.image"),
        (lambda t: t["previous.depth"].__setitem__((0, 0, 0), float("nan")), "NaN or inf"),
        (lambda t: t["ggm._pos"].__setitem__((0, 0), float("inf")), "NaN or inf"),
        (lambda t: t.__setitem__("keyframe.0.K", torch.zeros(2, 2)), "keyframe.0.K"),
        (lambda t: t.pop("start.image"), "missing tensors"),
        (lambda t: t.__setitem__("evil.payload", torch.zeros(1)), "unexpected tensor"),
    ],
)
def test_bad_tensors_are_refused(snapshot, tmp_path, edit, message):
    d = _copy(snapshot, tmp_path)
    _edit_tensors(d, edit)
    with pytest.raises(SnapshotError, match=message):
        WorldStereo.load(d)


def test_a_good_snapshot_is_compact_and_rebuilds_its_tokens_exactly(snapshot):
    meta = json.loads((snapshot / "state.json").read_text())
    assert meta["version"] == 2 and meta["ssm_tokens"] == "keyframes" and "ssm.features" not in meta["encoded"]
    stored = load_file(str(snapshot / "state.safetensors"))
    assert "ssm.features" not in stored and stored["keyframe.0.image"].dtype == torch.uint8
    m = WorldStereo.load(snapshot)
    again = m.save(snapshot.parent / "again")
    n = WorldStereo.load(again)
    for (k, a), (_, b) in zip(m.ssm.state_dict().items(), n.ssm.state_dict().items(), strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)), k


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda raw, meta: raw.__setitem__("ggm._pos", torch.randint(0, 255, (64,), dtype=torch.uint8)),
         "corrupt compressed data|decodes to"),
        (lambda raw, meta: meta["encoded"]["ggm._pos"].__setitem__("shape", [10**11, 3]), "beyond the limit"),
        (lambda raw, meta: meta["encoded"]["ggm._pos"].__setitem__("shape", [5, 3]), "decodes to"),
        (lambda raw, meta: meta["encoded"]["ggm._pos"].__setitem__("codec", "pickle"), "unknown encoding"),
        (lambda raw, meta: meta["encoded"].__setitem__("start.nothing", meta["encoded"]["ggm._pos"]), "'encoded' names"),
        (lambda raw, meta: meta.__setitem__("keyframes", meta["keyframes"][:0]), "keyframe"),
    ],
)
def test_bad_encodings_are_refused(snapshot, tmp_path, tamper, message):
    d = _copy(snapshot, tmp_path)
    meta = json.loads((d / "state.json").read_text())
    raw = load_file(str(d / "state.safetensors"))
    tamper(raw, meta)
    save_file(raw, str(d / "state.safetensors"))
    (d / "state.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotError, match=message):
        WorldStereo.load(d)


def test_lying_headers_and_sizes_are_refused_before_reading(snapshot, tmp_path, monkeypatch):
    d = _copy(snapshot, tmp_path)
    raw = (d / "state.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    header["ggm._pos"]["shape"] = [10**12, 3]  # declares far more data than the file holds
    blob = json.dumps(header).encode()
    (d / "state.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])
    with pytest.raises(SnapshotError, match="beyond its data"):
        WorldStereo.load(d)
    (d / "state.safetensors").write_bytes(struct.pack("<Q", 10**15) + b"{}")
    with pytest.raises(SnapshotError, match="header size"):
        WorldStereo.load(d)
    d2 = _copy(snapshot, tmp_path / "b")
    monkeypatch.setattr(limits, "MAX_SNAPSHOT_BYTES", 1000)
    import worldstereo.snapshot_checks as sc

    monkeypatch.setattr(sc, "MAX_SNAPSHOT_BYTES", 1000)
    with pytest.raises(SnapshotError, match="more than the limit"):
        WorldStereo.load(d2)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_snapshot_archives_are_extracted_safely(snapshot, tmp_path):
    good = {f"snapshot/{n}": (snapshot / n).read_bytes() for n in ("state.json", "state.safetensors")}
    out = extract_snapshot_zip(_zip(tmp_path / "good.zip", good), tmp_path / "x")
    assert WorldStereo.load(out).ggm.num_points > 0
    bad = [
        ({**good, "../../evil.py": b"print(1)"}, "outside the snapshot"),
        ({**good, "/etc/passwd": b"x"}, "outside the snapshot"),
        ({**good, "snapshot/extra.bin": b"x"}, "unexpected archive member"),
        ({"snapshot/state.json": good["snapshot/state.json"]}, "not a WorldStereo snapshot"),
    ]
    for i, (members, message) in enumerate(bad):
        with pytest.raises(SnapshotError, match=message):
            extract_snapshot_zip(_zip(tmp_path / f"bad{i}.zip", members), tmp_path / f"y{i}")
        assert not (tmp_path.parent / "evil.py").exists()
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(SnapshotError, match="not a zip"):
        extract_snapshot_zip(tmp_path / "junk.zip", tmp_path / "z")
    # a bomb: a tiny archive that inflates past the JSON limit
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("state.json", b" " * (limits.MAX_SNAPSHOT_JSON_BYTES + 10))
        zf.writestr("state.safetensors", b"x")
    with pytest.raises(SnapshotError, match="more than the limit"):
        extract_snapshot_zip(tmp_path / "bomb.zip", tmp_path / "w")
