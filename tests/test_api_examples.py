"""The "Example Usage" snippets of API.md, run as published (``.cuda()`` removed, ``CameraParameters(...)`` filled in)."""

from __future__ import annotations

import subprocess
import sys

import torch


def test_global_geometric_memory_example():
    import torch

    from worldstereo import CameraParameters, GlobalGeometricMemory

    # Create memory module
    global_memory = GlobalGeometricMemory(
        point_cloud_dim=256,
        feature_dim=768,
        num_neighbors=32
    )

    # Initialize with point cloud
    initial_points = torch.randn(5000, 3)
    global_memory.initialize(initial_points)

    # Query features
    query_points = torch.randn(1, 100, 3)
    camera_params = CameraParameters(torch.tensor([[200.0, 0, 128], [0, 200.0, 96], [0, 0, 1]]), torch.eye(4), 256, 192)
    features = global_memory.query(
        query_points=query_points,
        camera_params=camera_params,
        aggregation="weighted"
    )
    assert features.shape == (1, 100, 768)
    assert bool(torch.isfinite(features).all())
    assert global_memory.num_points == 5000
    assert global_memory.point_cloud.shape == (5000, 3)
    assert global_memory.point_features.shape == (5000, 768)


def test_spatial_stereo_memory_example():
    from worldstereo import SpatialStereoMemory

    # Create memory module
    spatial_memory = SpatialStereoMemory(
        memory_size=1024,
        feature_dim=768,
        num_correspondences=64,
        attention_window=7
    )

    # Extract features from initial frame (stand-ins for model.extract_features & co.)
    features = torch.randn(300, 768)  # (N, 768)
    correspondences = torch.randn(300, 64, 3)  # (N, 64, 3)
    confidence = torch.rand(300, 64)  # (N, 64)

    # Add to memory
    indices = spatial_memory.add_to_memory(
        features=features,
        correspondences=correspondences,
        confidence=confidence
    )
    assert sorted(indices) == list(range(300))
    assert spatial_memory.occupancy == 300 / 1024
    assert spatial_memory.memory_bank.shape == (1024, 768)
    assert spatial_memory.correspondence_map.shape == (1024, 64, 3)


def test_library_never_imports_gradio_or_viser():
    code = "import sys, worldstereo, worldstereo.cli, worldstereo.exports, worldstereo.formats, worldstereo.trajectory, worldstereo.scenes; " \
           "bad = [m for m in sys.modules if m.split('.')[0] in ('gradio', 'viser')]; print(bad); sys.exit(1 if bad else 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
