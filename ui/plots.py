"""Plotly figures of the page: memory statistics per step and the attention heatmap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from worldstereo.history import MemoryHistory
from worldstereo.pipeline import MemoryStats


@dataclass(frozen=True)
class StatsPoint:
    """Memory statistics after one committed frame, with its global frame id and path index, and the mean
    disagreement of the frame with the memory's render (nan when unknown)."""

    frame_id: int
    path_index: int
    stats: MemoryStats
    disagreement: float = float("nan")


def stats_points(history: MemoryHistory, memory_size: int) -> list[StatsPoint]:
    """The chart's points, read from the model's history (one per committed frame)."""
    out = []
    for e in history.entries:
        st = e.stats
        mem = MemoryStats(points_total=st.get("points_total", 0), points_added=st.get("num_added", 0),
                          points_merged=st.get("num_merged", 0), points_evicted=st.get("num_evicted", 0),
                          ssm_occupancy=st.get("ssm_entries", 0) / max(memory_size, 1),
                          ssm_entries=st.get("ssm_entries", 0), ssm_added=st.get("ssm_added", 0),
                          ssm_evicted=st.get("ssm_evicted", 0), keyframes=len(e.book.frame_ids))
        out.append(StatsPoint(e.frame_id, e.path_index, mem, e.disagreement))
    return out


#: tick labels of counts: whole numbers with thousands separators (not plotly's "816.5955k")
COUNT_TICKS = ",d"


def memory_figure(history: Sequence[StatsPoint], cursor: int | None = None) -> go.Figure:
    """Three panels over the committed frames (x = frame id): GGM points (total line; added, merged, evicted bars),
    SSM (occupancy line in %; tokens added and evicted bars), and the memory disagreement (mean |output - the
    memory's render| where it knew the pixel: a break in consistency shows as a spike). ``cursor``: the frame the
    inspector shows (a vertical line).

    The per-frame counts are on log axes: a frame may merge 90K points and add 200, and both must be readable;
    every count is labelled as a whole number."""
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.09, row_heights=[0.4, 0.35, 0.25],
        subplot_titles=("Global-Geometric Memory (points)", "Spatial-Stereo Memory", "Memory disagreement"),
        specs=[[{"secondary_y": True}], [{"secondary_y": True}], [{}]],
    )
    x = [h.frame_id for h in history]
    s = [h.stats for h in history]
    fig.add_trace(go.Bar(x=x, y=[m.points_added for m in s], name="added", marker_color="#2ca02c"), row=1, col=1)
    fig.add_trace(go.Bar(x=x, y=[m.points_merged for m in s], name="merged", marker_color="#1f77b4"), row=1, col=1)
    fig.add_trace(go.Bar(x=x, y=[m.points_evicted for m in s], name="evicted", marker_color="#d62728"), row=1, col=1)
    fig.add_trace(
        go.Scatter(x=x, y=[m.points_total for m in s], name="total", mode="lines+markers", line_color="#333"),
        row=1, col=1, secondary_y=True,
    )
    fig.add_trace(go.Bar(x=x, y=[m.ssm_added for m in s], name="tokens added", marker_color="#9467bd"), row=2, col=1)
    fig.add_trace(go.Bar(x=x, y=[m.ssm_evicted for m in s], name="tokens evicted", marker_color="#ff7f0e"), row=2, col=1)
    fig.add_trace(
        go.Scatter(x=x, y=[100.0 * m.ssm_occupancy for m in s], name="occupancy %", mode="lines+markers", line_color="#8c564b"),
        row=2, col=1, secondary_y=True,
    )
    fig.add_trace(go.Scatter(x=x, y=[h.disagreement for h in history], name="disagreement", mode="lines+markers",
                             line_color="#d62728"), row=3, col=1)
    if cursor is not None:
        fig.add_vline(x=cursor, line_width=2, line_dash="dot", line_color="#e6b800")
    fig.update_layout(barmode="group", height=520, margin={"l": 50, "r": 60, "t": 40, "b": 30}, legend={"orientation": "h"})
    fig.update_xaxes(title_text="frame id", row=3, col=1)
    fig.update_yaxes(title_text="mean |difference|", rangemode="tozero", row=3, col=1)
    fig.update_xaxes(tickformat="d")
    fig.update_yaxes(title_text="per frame (log)", type="log", tickformat=COUNT_TICKS, row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="total", tickformat=COUNT_TICKS, rangemode="tozero", row=1, col=1, secondary_y=True)
    fig.update_yaxes(title_text="tokens (log)", type="log", tickformat=COUNT_TICKS, row=2, col=1, secondary_y=False)
    fig.update_yaxes(title_text="occupancy %", range=[0, 100], tickformat="d", row=2, col=1, secondary_y=True)
    return fig


def attention_heatmap(frame_ids: Sequence[int], weights: np.ndarray, grid: tuple[int, int], title: str) -> go.Figure:
    """Heatmap over the memory bank grouped by keyframe: one row per stored keyframe, one column per token
    (row-major patch index ``r * cols + c``), colour = attention weight of the query token on that entry.

    Args:
        frame_ids: (F,) keyframe ids (row labels).
        weights: (F, rows * cols) weights.
        grid: (rows, cols) token grid of the keyframes.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != len(frame_ids):
        raise ValueError(f"weights must have shape ({len(frame_ids)}, T), got {w.shape}")
    rows, cols = grid
    fig = go.Figure(
        go.Heatmap(
            z=w, x=np.arange(w.shape[1]), y=[f"frame {f}" for f in frame_ids], colorscale="Inferno",
            zmin=0.0, zmax=max(float(w.max()), 1e-6) if w.size else 1.0,
            hovertemplate="%{y}, token %{x}<extra>weight %{z:.3f}</extra>",
            customdata=None,
        )
    )
    fig.update_layout(
        title=title, height=120 + 28 * max(len(frame_ids), 1), margin={"l": 80, "r": 20, "t": 40, "b": 40},
        xaxis_title=f"token (row-major on the {rows}x{cols} patch grid)",
    )
    return fig
