"""The two memories: Global-Geometric (point cloud) and Spatial-Stereo (keyframe tokens), and their parts."""

from worldstereo.memory.encoders import FourierPointEncoder
from worldstereo.memory.global_geometric import GlobalGeometricMemory
from worldstereo.memory.patch_encoder import PatchEncoder
from worldstereo.memory.spatial_index import SPATIAL_INDEXES, make_spatial_index
from worldstereo.memory.spatial_stereo import SpatialStereoMemory, SSMEntryMetadata

__all__ = [
    "SPATIAL_INDEXES",
    "FourierPointEncoder",
    "GlobalGeometricMemory",
    "PatchEncoder",
    "SSMEntryMetadata",
    "SpatialStereoMemory",
    "make_spatial_index",
]
