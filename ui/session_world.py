"""Build a world from a browser session: the default plan from the current memories, with progress, and the
dataset as one zip for the Downloads.

:class:`WorldBuilding` is a mixin of :class:`ui.explorer.Session` (the host has ``model``, ``bundle``,
``directory``, ``viewport``, ``_exclusive`` and ``_cancel``).
"""

from __future__ import annotations

import queue
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

from worldstereo import trajectory
from worldstereo.atomic import atomic_path
from worldstereo.threads import shared_policy
from worldstereo.world import WorldPlan, build_world, example_plan, panorama_plan, photo_plan

__all__ = ["WorldBuilding", "zip_folder"]


def zip_folder(folder: Path, archive: Path) -> Path:
    """``folder`` (recursively) as one zip, written atomically; names relative to ``folder``'s parent."""
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return archive


class WorldBuilding:
    """The *Build world* action of a session."""

    def world_plan(self, frames: int) -> WorldPlan:
        """The default plan of this input: a panorama's walks out and back, an example's official paths, a photo's moves."""
        if self.bundle is not None and self.bundle.kind == "panorama":
            return panorama_plan(4, frames)
        paths = [p for p in (self.bundle.paths if self.bundle is not None else []) if p.info.source is not None]
        if paths:
            return example_plan([(p.name, p.info.source) for p in paths[:4]], frames)
        return photo_plan(frames)

    def build_world(self, frames: int = 21) -> Iterator[tuple[str, list[str] | None]]:
        """Run the default plan from the current memories; yields (progress line, None) while it runs and
        finally (summary, [dataset zip]). Cancel stops it after the current frame (finished trajectories stay)."""
        model = self._require_model()
        plan = self.world_plan(int(frames))
        total = sum(1 for _ in plan.trajectories)
        with self._exclusive():
            self._cancel.clear()
            (self.directory / "downloads").mkdir(parents=True, exist_ok=True)
            out = self.directory / "world"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            updates: queue.Queue = queue.Queue()
            done: list[str] = []

            def on_step(name: str, step) -> None:
                if self._cancel.is_set():
                    raise KeyboardInterrupt
                updates.put(f"World: trajectory {len(done) + 1} / {total} ({name}), frame {step.frame_index + 1} / "
                            f"{step.num_frames}")

            def read_cameras(t, n):
                return trajectory.subsample(next(p.cameras for p in self.bundle.paths if p.name == t.name), n)

            result: dict = {}

            def run() -> None:
                try:
                    with shared_policy().generation():  # this world's share of the thread budget
                        result["summary"] = build_world(plan, out, {"input": self.bundle.label if self.bundle else "?"},
                                                        lambda _start: model, read_cameras, progress=False,
                                                        log=done.append, on_step=on_step)
                except BaseException as exc:  # noqa: BLE001 - handed to the page below
                    result["error"] = exc
                finally:
                    updates.put(None)

            worker = threading.Thread(target=run, name="worldstereo-world", daemon=True)
            worker.start()
            while (line := updates.get()) is not None:
                yield line, None
            worker.join()
            self.viewport.show_memory(model.context)
            if "error" in result:
                if isinstance(result["error"], KeyboardInterrupt):
                    yield f"World cancelled after {len(done)} of {total} trajectories (they are kept in memory).", None
                    return
                raise result["error"]
            s = result["summary"]
            archive = zip_folder(s.dataset, self.directory / "downloads" / "world_dataset.zip")
        yield (f"World built: {total} trajectories, {s.frames} frames, {s.points:,} points "
               f"({s.seconds:.0f} s). The dataset (images, depths, masks, transforms.json, pointcloud.ply) is in Downloads."), [str(archive)]
