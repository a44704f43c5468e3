"""Process settings of the entry points: freed large blocks are reused, not re-faulted (page-fault counts in fresh
processes, so the test process's own setting does not interfere); the merge kernels are warmed up in the background."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_LOOP = r"""
import json, resource, sys
import torch
if sys.argv[1] == "1":
    from worldstereo.runtime import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
torch.zeros(16 << 20).sum()  # 64 MB once: the heap or the mapping exists
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # a frame's full-size temporary, allocated and freed 20 times
    torch.zeros(16 << 20).sum()
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(tuned: bool) -> int:
    env_free = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", _LOOP, "1" if tuned else "0"], capture_output=True, text=True,
                         check=True, env=env_free)
    return json.loads(out.stdout.strip().splitlines()[-1])["faults"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    pages = (64 << 20) // 4096  # pages of one 64 MB block
    default, tuned = _faults(False), _faults(True)
    assert default > 10 * pages  # glibc maps and unmaps the block every time: every page faults again
    # the same pages serve the iterations (a few re-faults remain where the kernel reclaims idle pages)
    assert tuned < default / 3, (default, tuned)


def test_warm_up_compiles_every_merge_kernel_and_never_raises(monkeypatch, caplog):
    import worldstereo.memory.global_geometric as ggm
    from worldstereo.memory import merge_kernels, voxel_hash
    from worldstereo.runtime import warm_up

    ggm.compile_merge_kernels()  # raises if any kernel fails; compiles or loads every one
    kernels = [getattr(voxel_hash, n) for n in dir(voxel_hash) if n.endswith("_kernel") or n == "_brick_order"]
    kernels.append(merge_kernels.merge_observations)
    assert len(kernels) >= 8
    assert all(k.signatures for k in kernels), [k.__name__ for k in kernels if not k.signatures]
    thread = warm_up()
    thread.join(timeout=60)
    assert not thread.is_alive() and thread.daemon

    def broken() -> None:
        raise RuntimeError("no compiler")

    monkeypatch.setattr(ggm, "compile_merge_kernels", broken)
    with caplog.at_level("WARNING", logger="worldstereo.runtime"):
        thread = warm_up()
        thread.join(timeout=60)
    assert "warming up the merge kernels failed" in caplog.text
