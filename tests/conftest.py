"""Shared pytest fixtures: paths to the example data and small deterministic helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from worldstereo.runtime import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]
# The official examples are copied into assets/ (with their licence); ../shared/data is the source.
EXAMPLES = REPO / "assets" / "examples"
if not EXAMPLES.exists():
    EXAMPLES = REPO.parent / "shared" / "data" / "worldstereo-examples"


# Nothing in the tests may leave 127.0.0.1: the Hub is switched off and the Hub cache is a fresh
# temporary folder (set before anything imports huggingface_hub, and inherited by subprocesses).
# Tests of the download path point HF_ENDPOINT at a local fake Hub and switch it back on.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="worldstereo-test-hf-")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("WORLDSTEREO_MOGE_WEIGHTS", None)
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing answers there

# One intra-op thread: tests run torch beside server, browser and worker threads; with two
# OpenMP threads on a 2-core machine, spin-waiting threads slowed small ops by up to ~40x.
torch.set_num_threads(1)
keep_freed_memory()  # as the CLI and the app run (worldstereo.runtime)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def examples_dir() -> Path:
    if not EXAMPLES.exists():
        pytest.skip("example data not found")
    return EXAMPLES


def cuda_available() -> bool:
    return torch.cuda.is_available()
