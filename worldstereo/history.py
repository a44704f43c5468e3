"""What each committed frame changed in the memories, and the memories as they were after any frame.

The one place where a frame changes the memories, the generation context's commit, appends one
:class:`HistoryEntry` per frame to the context's :class:`MemoryHistory` (``model.history``):

* the GGM's change (:class:`GGMChange`): the points the frame added (their values), the stored points a new
  observation merged into (their values after), the points it saw again (ids only: count + 1, last seen and
  observer set) and the points evicted past capacity;
* the SSM: the keyframe it stored, the keyframes whose last tokens were replaced, and the bank's bookkeeping per
  stored keyframe after it (:class:`KeyframeBook`: tokens, last use, importance, first write, as ``fifo``,
  ``lru`` and ``importance_based`` rank them);
* the views its pixels were resampled from and the attention mass its tokens gave each stored view;
* its camera, and its layers (:class:`FrameLayers`) downscaled to :data:`LAYER_SIDE` pixels on the longer side:
  the GGM render, its holes, what the SSM's views supplied, what was filled, the output, and the disagreement
  of the output with the render where the memory knew the pixel (:data:`disagreement` per frame too).

Every point gets a uid when it enters the memory (rows of the GGM are in uid order: appended at the end,
compacted in order on eviction). :meth:`MemoryHistory.state_at` replays the changes from the history's base
(the memories at a start, a load or a resume) up to a frame: the exact point set, positions, colours,
counts, last seen and confidence, with each point's source frame, and the SSM's keyframes as they were. It
never runs a generator. Evicted points stay inspectable (:attr:`MemoryState.evicted`).

Bounded (:data:`DEFAULT_CAP_BYTES`): past the cap, the oldest frames' layers go first, then the oldest changes
are folded into the base (the history then starts later). Capture and restore go with the context's own
(undo drops a path's history; a world's rounds keep only what they fold). A loaded snapshot starts a new
history at its state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from worldstereo.frame_layers import LAYER_SIDE, FrameLayers, KeyframeThumb, small_image, to_u8
from worldstereo.records import FrameObservation

__all__ = [
    "DEFAULT_CAP_BYTES",
    "LAYER_SIDE",
    "FrameLayers",
    "GGMChange",
    "HistoryEntry",
    "KeyframeBook",
    "KeyframeThumb",
    "MemoryHistory",
    "MemoryState",
    "PointRows",
]

#: the history's default size bound (bytes)
DEFAULT_CAP_BYTES = 256 * 2**20
_FIELDS = ("pos", "rgb", "conf", "count", "last_seen", "observer")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


@dataclass
class PointRows:
    """Values of some GGM points. ``uids`` (K,) int64; ``pos``, ``rgb``, ``observer`` (K, 3) float32; ``conf`` (K,)
    float32; ``count``, ``last_seen`` (K,) int64."""

    uids: np.ndarray
    pos: np.ndarray
    rgb: np.ndarray
    conf: np.ndarray
    count: np.ndarray
    last_seen: np.ndarray
    observer: np.ndarray

    @classmethod
    def read(cls, ggm: Any, rows: np.ndarray, uids: np.ndarray) -> PointRows:
        """The values of GGM rows ``rows`` (K,), whose uids are ``uids``."""
        r = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))

        def take(t: torch.Tensor) -> np.ndarray:
            return _np(t.index_select(0, r.to(t.device)))

        return cls(np.asarray(uids, np.int64), take(ggm.point_cloud), take(ggm.point_colors), take(ggm.point_confidence),
                   take(ggm.observation_counts), take(ggm.last_seen), take(ggm.observer_centers))

    @classmethod
    def empty(cls) -> PointRows:
        z3 = np.zeros((0, 3), np.float32)
        return cls(np.zeros(0, np.int64), z3, z3.copy(), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   np.zeros(0, np.int64), z3.copy())

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in ("uids", *_FIELDS))


@dataclass
class GGMChange:
    """What one commit changed in the GGM (uids; see the module docstring)."""

    observed: np.ndarray
    observe_step: int
    observe_center: np.ndarray
    merged: PointRows
    added: PointRows
    evicted: np.ndarray
    step: int

    @property
    def nbytes(self) -> int:
        return self.observed.nbytes + self.merged.nbytes + self.added.nbytes + self.evicted.nbytes


@dataclass
class KeyframeBook:
    """The SSM's bookkeeping per stored keyframe (K keyframes, in bank order: first written first).

    Attributes:
        frame_ids: (K,) int64; tokens: (K,) int64 occupied slots; last_use: (K,) int64 the latest write, attend or
        retrieve of its tokens (``lru``); importance: (K,) float32 mean of its tokens' importance
        (``importance_based``: mean valid confidence + attention mass); first_write: (K,) int64 its oldest token's
        write order (``fifo``).
    """

    frame_ids: np.ndarray
    tokens: np.ndarray
    last_use: np.ndarray
    importance: np.ndarray
    first_write: np.ndarray

    @classmethod
    def of(cls, ssm: Any, confidence: _SlotConfidence | None = None) -> KeyframeBook:
        """The book of ``ssm`` now (``confidence``: a cache of the slots' mean valid confidence, which only a write
        changes; without one it is computed for every slot)."""
        occ = ssm.occupied_mask
        if not bool(occ.any()):
            z = np.zeros(0, np.int64)
            return cls(z, z.copy(), z.copy(), np.zeros(0, np.float32), z.copy())
        frames = ssm.entry_frames[occ]
        ids, inv, counts = torch.unique(frames, return_inverse=True, return_counts=True)
        k = ids.shape[0]
        last = torch.zeros(k, dtype=torch.int64, device=frames.device).scatter_reduce(
            0, inv, ssm.last_use_step[occ], "amax", include_self=False)
        mean_conf = confidence.of(ssm) if confidence is not None else ssm.mean_valid_confidence
        importance = (mean_conf + ssm.attention_mass)[occ].float()  # SpatialStereoMemory.importance
        imp = torch.zeros(k, device=frames.device).index_add_(0, inv, importance) / counts
        first = torch.full((k,), 2**62, dtype=torch.int64, device=frames.device).scatter_reduce(
            0, inv, ssm.write_order[occ], "amin", include_self=True)
        order = torch.argsort(first)
        return cls(*(_np(t[order]) for t in (ids, counts, last, imp.float(), first)))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.frame_ids, self.tokens, self.last_use, self.importance, self.first_write))


class _SlotConfidence:
    """The SSM slots' mean valid confidence (the fixed part of their importance), recomputed only for slots written
    since the last call (a slot's write order changes with every write)."""

    def __init__(self) -> None:
        self.order: torch.Tensor | None = None
        self.value: torch.Tensor | None = None

    def of(self, ssm: Any) -> torch.Tensor:
        order = ssm.write_order
        if self.order is None or self.order.shape != order.shape or self.order.device != order.device:
            self.order, self.value = order.clone(), ssm.mean_valid_confidence.clone()
            return self.value
        changed = torch.nonzero(order != self.order).squeeze(1)
        if changed.numel():
            conf = ssm.confidence[changed]
            valid = ssm.occupied[changed, None] & (conf >= ssm.correspondence_threshold)
            total = torch.where(valid, conf, torch.zeros_like(conf)).sum(-1)
            self.value[changed] = total / valid.sum(-1).clamp(min=1).to(total.dtype)
            self.order[changed] = order[changed]
        return self.value



@dataclass
class HistoryEntry:
    """One committed frame (see the module docstring).

    Attributes:
        frame_id, path_index: the frame's global id and its path (a world's trajectory: :attr:`MemoryHistory.path_names`).
        K: (3, 3) intrinsics; w2c: (4, 4) world-to-camera; width, height: of the frame.
        is_keyframe: whether it was stored in the SSM.
        references: the stored views its pixels were resampled from.
        attention: frame id -> share of its tokens' attention mass on that stored view (empty when unknown).
        ggm: the GGM's change; book: the SSM's keyframes after it.
        keyframes_added, keyframes_dropped: frame ids stored, and dropped (their last tokens replaced).
        layers: :class:`FrameLayers` (None once the cap dropped them, or when not recorded).
        disagreement: mean |output - render| where the memory knew the pixel (nan when unknown).
        stats: the commit's counts (``num_added``, ``num_merged``, ``num_evicted``, ``ssm_added``, ``ssm_evicted``).
    """

    frame_id: int
    path_index: int
    K: np.ndarray
    w2c: np.ndarray
    width: int
    height: int
    is_keyframe: bool
    references: list[int]
    attention: dict[int, float]
    ggm: GGMChange
    book: KeyframeBook
    keyframes_added: list[int]
    keyframes_dropped: list[int]
    layers: FrameLayers | None
    disagreement: float
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return self.ggm.nbytes + self.book.nbytes + (self.layers.nbytes if self.layers is not None else 0) + 256


@dataclass
class MemoryState:
    """The memories right after frame ``frame_id`` (:meth:`MemoryHistory.state_at`).

    Attributes:
        points, colors: (N, 3) float32 tensors; uids, source_frame, observation_counts, last_seen: (N,) int64;
        confidence: (N,) float32; observer_centers: (N, 3). Rows in the GGM's order then.
        keyframe_ids: frame ids of the keyframes stored in the SSM; book: their bookkeeping.
        entry: the frame's own record (None for the base).
        added, merged: uids the frame added, and merged new observations into.
        evicted: the points evicted up to then (their last values), and ``evicted_now`` those this frame evicted.
    """

    frame_id: int
    points: torch.Tensor
    colors: torch.Tensor
    uids: torch.Tensor
    source_frame: torch.Tensor
    observation_counts: torch.Tensor
    last_seen: torch.Tensor
    confidence: torch.Tensor
    observer_centers: torch.Tensor
    keyframe_ids: list[int]
    book: KeyframeBook
    entry: HistoryEntry | None
    added: np.ndarray
    merged: np.ndarray
    evicted: PointRows
    evicted_now: PointRows


@dataclass
class _Base:
    """The memories a history starts from: all points (uids ``0..N-1``) with their source frames."""

    frame_id: int
    rows: PointRows
    source_frame: np.ndarray
    book: KeyframeBook
    step: int


@dataclass
class HistoryState:
    """What :meth:`MemoryHistory.capture` saves (entries are shared, never changed)."""

    base: _Base | None
    entries: list[HistoryEntry]
    row_uids: np.ndarray
    next_uid: int
    thumbnails: dict[int, KeyframeThumb]
    path_names: dict[int, str]


class MemoryHistory:
    """The record of every committed frame of an exploration (see the module docstring).

    Args:
        cap_bytes: the size bound; 0 turns recording off.
    """

    def __init__(self, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        self.cap_bytes = int(cap_bytes)
        self.base: _Base | None = None
        self.entries: list[HistoryEntry] = []
        self.row_uids = np.zeros(0, np.int64)
        self.next_uid = 0
        self.thumbnails: dict[int, KeyframeThumb] = {}
        """Frame id -> thumbnail, label and camera of every keyframe stored since the base (kept after its eviction)."""
        self.path_names: dict[int, str] = {}
        """Path index -> a name (a world's trajectory); unnamed paths are ``path N``."""
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None
        self._slot_confidence = _SlotConfidence()
        self._paused = False

    @property
    def enabled(self) -> bool:
        return self.cap_bytes > 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Commits inside record nothing (a world's trajectory, whose commits the fold replaces; restore a capture
        afterwards: the history no longer matches the memories)."""
        before, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = before

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def frame_ids(self) -> list[int]:
        """The recorded frames, in commit order."""
        return [e.frame_id for e in self.entries]

    def path_name(self, path_index: int) -> str:
        return self.path_names.get(path_index, f"path {path_index + 1}")

    def entry(self, frame_id: int) -> HistoryEntry:
        for e in reversed(self.entries):
            if e.frame_id == frame_id:
                return e
        raise KeyError(f"frame {frame_id} is not in the history (it holds {self.span()})")

    def span(self) -> str:
        if self.base is None:
            return "nothing"
        return f"frames {self.base.frame_id} (its start) to {self.entries[-1].frame_id if self.entries else self.base.frame_id}"

    @property
    def nbytes(self) -> int:
        base = self.base.rows.nbytes + self.base.source_frame.nbytes if self.base is not None else 0
        return base + sum(e.nbytes for e in self.entries) + sum(t.image.nbytes + 256 for t in self.thumbnails.values())

    # ------------------------------------------------------------------ start, capture, restore
    def begin(self, ggm: Any, ssm: Any, keyframes: list[Any], frame_id: int, source_frames: np.ndarray | int = -1) -> None:
        """Start a history at the memories as they are (a start, a load): every point gets a uid ``0..N-1``."""
        self.entries, self.thumbnails, self._cache = [], {}, None
        if not self.enabled:
            self.base = None
            return
        n = ggm.num_points
        self.row_uids = np.arange(n, dtype=np.int64)
        self.next_uid = n
        src = np.full(n, source_frames, np.int64) if np.isscalar(source_frames) else np.asarray(source_frames, np.int64)
        self._slot_confidence = _SlotConfidence()
        self.base = _Base(int(frame_id), PointRows.read(ggm, np.arange(n), self.row_uids), src,
                          KeyframeBook.of(ssm, self._slot_confidence), ggm.step)
        for kf in keyframes:
            self._thumbnail(kf)

    def capture(self) -> HistoryState:
        return HistoryState(self.base, list(self.entries), self.row_uids.copy(), self.next_uid, dict(self.thumbnails),
                            dict(self.path_names))

    def restore(self, state: HistoryState | None) -> None:
        if state is None:
            return
        self.base, self.entries, self.row_uids = state.base, list(state.entries), state.row_uids.copy()
        self.next_uid, self.thumbnails, self.path_names = state.next_uid, dict(state.thumbnails), dict(state.path_names)
        self._cache = None

    def _thumbnail(self, keyframe: Any) -> None:
        cam = keyframe.camera
        self.thumbnails[int(keyframe.frame_id)] = KeyframeThumb(
            to_u8(small_image(keyframe.image, LAYER_SIDE, "area")), str(keyframe.label or ""),
            _np(cam.K[0]).astype(np.float64), _np(cam.w2c[0]).astype(np.float64), int(cam.width), int(cam.height))

    # ------------------------------------------------------------------ recording
    def before_commit(self, ggm: Any) -> tuple[int, int]:
        """What :meth:`record` needs of the GGM before a commit: (points, update step)."""
        return ggm.num_points, ggm.step

    def record(self, ggm: Any, ssm: Any, keyframes: list[Any], before: tuple[int, int], obs: FrameObservation,
               keyframe: bool, path_index: int, frame_id: int, stats: dict[str, int], observed: bool) -> None:
        """Append the change one commit made (called by the generation context after it)."""
        if not self.enabled or self.base is None or self._paused:
            return
        n0, step0 = before
        step = ggm.step
        observe_step = step0 + 1 if observed else -1
        kept = ggm.last_kept
        n_pre = n0 + int(stats.get("num_added", 0))  # rows before eviction: the old ones, then the appended
        pre_uids = np.concatenate([self.row_uids, np.arange(self.next_uid, self.next_uid + n_pre - n0, dtype=np.int64)])
        self.next_uid += n_pre - n0
        # ``last_kept`` belongs to the GGM's last update: a commit without one (only re-observations) evicted nothing
        evicted_now = int(stats.get("num_evicted", 0)) > 0
        keep = kept.numpy() if evicted_now and kept is not None else np.ones(n_pre, bool)
        if keep.shape[0] != n_pre:
            raise RuntimeError(f"history out of step with the GGM: {keep.shape[0]} rows before eviction, {n_pre} expected")
        self.row_uids = pre_uids[keep]
        evicted = pre_uids[~keep]
        last = _np(ggm.last_seen)
        rows = np.arange(ggm.num_points)
        old = self.row_uids < pre_uids[n0] if n_pre > n0 else np.ones(len(rows), bool)
        merged_rows = rows[old & (last == step)] if stats.get("num_added", 0) or stats.get("num_merged", 0) else rows[:0]
        if observed and step == observe_step:  # no update after the observation: its rows carry its step
            merged_rows = rows[:0]
        observed_rows = rows[old & (last == observe_step)] if observed else rows[:0]
        new_rows = rows[~old]
        centre = _np(ggm.observer_centers[int(observed_rows[0])]) if observed_rows.size else np.zeros(3, np.float32)
        if observed and not observed_rows.size and merged_rows.size:
            centre = _np(ggm.observer_centers[int(merged_rows[0])])
        change = GGMChange(
            observed=self.row_uids[observed_rows] if observed else np.zeros(0, np.int64),
            observe_step=observe_step, observe_center=centre,
            merged=PointRows.read(ggm, merged_rows, self.row_uids[merged_rows]),
            added=PointRows.read(ggm, new_rows, self.row_uids[new_rows]),
            evicted=evicted, step=step,
        )
        # observed rows that a merge then changed are in ``merged`` with their final values: replayed after
        f = obs.frame
        att = {}
        if f.attention is not None and f.attention.frame_weights:
            total = f.attention.grid[0] * f.attention.grid[1]
            att = {int(k): float(v.sum()) / max(total, 1) for k, v in f.attention.frame_weights.items()}
        alive = {int(k.frame_id) for k in keyframes}
        before_ids = {int(i) for i in (self.entries[-1].book.frame_ids if self.entries else self.base.book.frame_ids)}
        book = KeyframeBook.of(ssm, self._slot_confidence)
        added_kf = [frame_id] if keyframe and frame_id in alive and frame_id not in before_ids else []
        for kf in keyframes:
            if int(kf.frame_id) in added_kf:
                self._thumbnail(kf)
        # layers made while the frame was generated (a world's trajectory, folded later), else from the frame
        layers = obs.layers if isinstance(obs.layers, FrameLayers) else FrameLayers.of(f) if f.image.numel() else None
        dis = layers.mean_disagreement if layers is not None else float("nan")
        cam = obs.camera
        stats = {**stats, "points_total": ggm.num_points, "ssm_entries": int(book.tokens.sum())}
        self.entries.append(HistoryEntry(
            int(frame_id), int(path_index), _np(cam.K[0]).astype(np.float64), _np(cam.w2c[0]).astype(np.float64),
            int(cam.width), int(cam.height), bool(keyframe), [int(r) for r in f.references], att, change, book,
            added_kf, sorted(before_ids - {int(i) for i in book.frame_ids}), layers, dis, dict(stats)))
        self._enforce_cap()

    # ------------------------------------------------------------------ the past
    def _replay_to(self, index: int) -> dict[str, np.ndarray]:
        """Arrays over every uid after entry ``index`` (-1: the base): values, ``alive``, ``source``."""
        assert self.base is not None
        if self._cache is not None and self._cache[0] <= index:
            start, arrays = self._cache[0] + 1, {k: v.copy() for k, v in self._cache[1].items()}
            if arrays["alive"].shape[0] < self.next_uid:
                arrays = _grown(arrays, self.next_uid)
        else:
            start, arrays = 0, _base_arrays(self.base, self.next_uid)
        for e in self.entries[start : index + 1]:
            _apply(arrays, e)
        self._cache = (index, arrays)
        return arrays

    def state_at(self, frame_id: int) -> MemoryState:
        """The memories right after frame ``frame_id`` (the history's base frame: as they were at its start).

        Raises:
            KeyError: a frame the history does not hold (before its base, or dropped past the cap).
        """
        if self.base is None:
            raise KeyError("the history is off or has not started")
        if frame_id == self.base.frame_id and not any(e.frame_id == frame_id for e in self.entries):
            index = -1
        else:
            index = max((i for i, e in enumerate(self.entries) if e.frame_id == frame_id), default=None)
            if index is None:
                raise KeyError(f"frame {frame_id} is not in the history (it holds {self.span()})")
        a = self._replay_to(index)
        alive = np.flatnonzero(a["alive"])

        def t(name: str) -> torch.Tensor:
            return torch.from_numpy(a[name][alive].copy())

        entry = self.entries[index] if index >= 0 else None
        gone = np.flatnonzero(a["evicted_at"] >= 0)
        now = entry.ggm.evicted if entry is not None else np.zeros(0, np.int64)
        return MemoryState(
            frame_id, t("pos"), t("rgb"), torch.from_numpy(alive.astype(np.int64)), t("source"), t("count"),
            t("last_seen"), t("conf"), t("observer"),
            [int(i) for i in (entry.book if entry is not None else self.base.book).frame_ids],
            entry.book if entry is not None else self.base.book, entry,
            entry.ggm.added.uids if entry is not None else np.zeros(0, np.int64),
            entry.ggm.merged.uids if entry is not None else np.zeros(0, np.int64),
            _rows(a, gone), _rows(a, now),
        )

    def frame_of_steps(self, steps: np.ndarray) -> np.ndarray:
        """The frame id at which the GGM's update ``steps`` (e.g. points' last seen) were taken (the base frame for the
        base's own steps and before)."""
        keys = [(self.base.step if self.base is not None else 0, self.base.frame_id if self.base is not None else 0)]
        for e in self.entries:
            if e.ggm.observe_step >= 0:
                keys.append((e.ggm.observe_step, e.frame_id))
            keys.append((e.ggm.step, e.frame_id))
        order = sorted(keys)
        at = np.array([k for k, _ in order], np.int64)
        fr = np.array([f for _, f in order], np.int64)
        idx = np.clip(np.searchsorted(at, np.asarray(steps, np.int64), side="right") - 1, 0, len(at) - 1)
        return fr[idx]

    # ------------------------------------------------------------------ the bound
    def _enforce_cap(self) -> None:
        if self.nbytes <= self.cap_bytes:
            return
        for e in self.entries:  # the oldest frames' layers go first
            if e.layers is not None:
                e.layers = None
                if self.nbytes <= self.cap_bytes:
                    return
        while len(self.entries) > 1 and self.nbytes > self.cap_bytes:  # then the oldest changes join the base
            first = self.entries[0]
            a = self._replay_to(0)
            alive = np.flatnonzero(a["alive"])
            self.base = _Base(first.frame_id, _rows(a, alive), a["source"][alive].copy(), first.book, first.ggm.step)
            self.entries = self.entries[1:]
            self._cache = None


def _base_arrays(base: _Base, size: int) -> dict[str, np.ndarray]:
    """Arrays over ``size`` uids holding the base's points (others not alive)."""
    r = base.rows
    u = r.uids
    a = {
        "pos": np.zeros((size, 3), np.float32), "rgb": np.zeros((size, 3), np.float32), "conf": np.zeros(size, np.float32),
        "count": np.zeros(size, np.int64), "last_seen": np.zeros(size, np.int64), "observer": np.zeros((size, 3), np.float32),
        "alive": np.zeros(size, bool), "source": np.full(size, -1, np.int64), "evicted_at": np.full(size, -1, np.int64),
    }
    for f in _FIELDS:
        a[f][u] = getattr(r, f)
    a["alive"][u] = True
    a["source"][u] = base.source_frame
    return a


def _grown(a: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    out = {}
    for k, v in a.items():
        fill = -1 if k in ("source", "evicted_at") else 0
        g = np.full((size,) + v.shape[1:], fill, v.dtype)
        g[: v.shape[0]] = v
        out[k] = g
    return out


def _apply(a: dict[str, np.ndarray], e: HistoryEntry) -> None:
    """Replay one entry's change onto the uid arrays."""
    g = e.ggm
    need = max([a["alive"].shape[0]] + [int(x.max()) + 1 for x in (g.added.uids, g.merged.uids, g.observed) if x.size])
    if need > a["alive"].shape[0]:
        a.update(_grown(a, need))
    if g.observed.size:
        a["count"][g.observed] += 1
        a["last_seen"][g.observed] = g.observe_step
        a["observer"][g.observed] = g.observe_center
    for rows in (g.merged, g.added):
        if rows.uids.size:
            for f in _FIELDS:
                a[f][rows.uids] = getattr(rows, f)
    if g.added.uids.size:
        a["alive"][g.added.uids] = True
        a["source"][g.added.uids] = e.frame_id
    if g.evicted.size:
        a["alive"][g.evicted] = False
        a["evicted_at"][g.evicted] = e.frame_id


def _rows(a: dict[str, np.ndarray], uids: np.ndarray) -> PointRows:
    u = np.asarray(uids, np.int64)
    return PointRows(u.copy(), *(a[f][u].copy() for f in _FIELDS))

