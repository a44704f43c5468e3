"""Documented upper bounds on inputs, checked before any work starts (with the reason in the message).

Images and depth maps are bounded by :data:`worldstereo.imageio_utils.MAX_IMAGE_PIXELS`; the
working size by the CLI's ``--size`` (sides up to 4096).
"""

from __future__ import annotations

import os
from pathlib import Path

#: frames of one path. Each frame is generated and kept (about 1 MB of outputs and up to W x H new
#: GGM points at 512x384); a longer exploration is several paths (one shared memory).
MAX_PATH_FRAMES = 1000
#: poses in one camera file (official files hold tens; a file is subsampled to --frames).
MAX_CAMERA_POSES = 20_000
#: bytes of one camera file (20,000 poses of JSON fit in about 10 MB).
MAX_CAMERA_FILE_BYTES = 32 * 2**20
#: bytes of a memory snapshot's tensors (a full 1M-point GGM, a 24,576-token SSM and 32 keyframes
#: at 512x384 take about 0.4 GB).
MAX_SNAPSHOT_BYTES = 2 * 2**30
#: bytes of a snapshot's state.json.
MAX_SNAPSHOT_JSON_BYTES = 8 * 2**20
#: paths recorded in one snapshot.
MAX_SNAPSHOT_PATHS = 10_000

FRAMES_REASON = (
    f"at most {MAX_PATH_FRAMES} frames per path: each frame is generated and stored (about 1 MB of "
    "outputs and up to W x H new points at 512x384); explore further with several paths"
)


def check_path_frames(n: int, what: str = "a path") -> None:
    """Raise ValueError when ``n`` frames exceed :data:`MAX_PATH_FRAMES`."""
    if n > MAX_PATH_FRAMES:
        raise ValueError(f"{what} has {n} frames; {FRAMES_REASON}")


def check_file_size(path: str | os.PathLike, limit: int, what: str) -> None:
    """Raise ValueError when the file at ``path`` is larger than ``limit`` bytes (before reading it)."""
    try:
        size = Path(path).stat().st_size
    except OSError:
        return  # the reader reports a missing file in its own words
    if size > limit:
        raise ValueError(f"{what} is {size / 2**20:.1f} MiB, more than the limit of {limit / 2**20:.0f} MiB")
