"""The spatial-stereo correspondence mask: which memory entries each query may attend to.

A query ``(b, n)`` may attend to entry ``m`` when at least one of the entry's valid
correspondences ``k``, projected into the query camera ``b``,

* lands within ``window`` pixels of the query's own projection, measured with the
  **Chebyshev** distance (a square window): ``|du| <= window`` and ``|dv| <= window``;
* lies in front of the camera (``depth > 0``), as does the query point;
* has a depth consistent with the query point's: ``|z_corr - z_query| <= depth_tolerance * z_query``.
  A correspondence behind the query's surface is occluded by it; one well in front of it belongs
  to another surface. Either way it does not count.

Two implementations with one contract:

* :func:`correspondence_mask` sorts the projected correspondences by a grid cell key (rows of
  ``window / 2`` pixels, columns of ``window / 4``, row-major), so that for each query and each
  row of cells its window touches, the candidates form one contiguous range of the sorted list,
  found by binary search; only those candidates (about 1.4 window areas, a superset of the
  pairs that can pass) get the exact test, and the passing pairs are scattered into the mask;
* :func:`correspondence_mask_reference` compares every query with every correspondence.

Inputs are projections (pixel coordinates and depths), so both functions are camera-agnostic.
"""

from __future__ import annotations

import torch

__all__ = ["correspondence_mask", "correspondence_mask_reference", "spatial_row_keys"]

# Cell rows are window / _ROWS_PER_WINDOW high, cell columns window / _COLS_PER_WINDOW wide.
_ROWS_PER_WINDOW = 2
_COLS_PER_WINDOW = 4
# Rows of cells a window of half-width w (widened by the margin below) can touch: 2 * 2 + 2.
_MAX_ROWS = 2 * _ROWS_PER_WINDOW + 2
# The candidate search widens the window by this relative margin: ``|du| <= w`` evaluated in
# floating point allows an exact difference of up to w (1 + ~1e-7); floor() of a quotient is
# monotonic, so the widened range of cells is a guaranteed superset.
_WINDOW_MARGIN = 1.0 + 1e-5
# Cell coordinates are clamped to +-2**19 (clamping is monotonic, so neighbours stay neighbours)
# and shifted to be non-negative; a cell key packs (batch, row, column) into one int64.
_CELL_CLAMP = 2**19
_CELL_STRIDE = 2**21
# Upper bound on candidate pairs expanded at once (memory ~ 50 bytes per pair).
_MAX_PAIRS_PER_CHUNK = 4_000_000


def correspondence_mask_reference(
    query_uv: torch.Tensor,
    query_depth: torch.Tensor,
    corr_uv: torch.Tensor,
    corr_depth: torch.Tensor,
    corr_valid: torch.Tensor,
    window: float,
    depth_tolerance: float,
) -> torch.Tensor:
    """Dense reference: every query against every correspondence (memory ~ B*N*M*K).

    Args:
        query_uv: (B, N, 2) query points projected into their camera, pixels.
        query_depth: (B, N) their camera-frame depth.
        corr_uv: (B, M, K, 2) every correspondence projected into camera ``b``.
        corr_depth: (B, M, K) their depth in camera ``b``.
        corr_valid: (M, K) or (B, M, K) bool, the correspondences that count (stored, confident).
        window: Chebyshev radius in pixels.
        depth_tolerance: relative depth tolerance.
    Returns:
        (B, N, M) bool, True where query ``n`` may attend to entry ``m``.
    """
    q_ok = (query_depth > 0) & torch.isfinite(query_uv).all(-1) & torch.isfinite(query_depth)
    c_ok = corr_valid & (corr_depth > 0)  # non-finite projections fail the comparisons below
    du = (corr_uv[:, None] - query_uv[:, :, None, None, :]).abs()  # (B, N, M, K, 2)
    in_window = (du <= window).all(-1)
    zq = query_depth[:, :, None, None]
    consistent = (corr_depth[:, None] - zq).abs() <= depth_tolerance * zq
    pair = in_window & consistent & c_ok[:, None] & q_ok[:, :, None, None]
    return pair.any(-1)


def _cell_index(x: torch.Tensor, size: float | torch.Tensor) -> torch.Tensor:
    """float64 coordinates -> int64 cell indices ``floor(x / size)``, clamped to +-2**19 (a
    monotonic map, so ranges stay ranges) and shifted to be positive. NaN maps to cell 0's
    neighbourhood, +-inf to the clamp bounds (such points never pass the exact test anyway)."""
    x = torch.nan_to_num(x, nan=0.0)
    return torch.floor(x / size).clamp_(-_CELL_CLAMP, _CELL_CLAMP).long() + (_CELL_CLAMP + 1)


def _cell_key(b: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Pack (batch, cell row, cell column) into one int64, ordered row-major within a batch."""
    return (b * _CELL_STRIDE + row) * _CELL_STRIDE + col


def correspondence_mask(
    query_uv: torch.Tensor,
    query_depth: torch.Tensor,
    corr_uv: torch.Tensor,
    corr_depth: torch.Tensor,
    corr_valid: torch.Tensor,
    window: float,
    depth_tolerance: float,
) -> torch.Tensor:
    """Fast, exact equivalent of :func:`correspondence_mask_reference` (same arguments and result).

    Cost ~ O(P log P + number of query/correspondence pairs in neighbouring cells), where P is the
    number of valid correspondences, instead of O(N * M * K).
    """
    B, N = query_depth.shape
    M, K = corr_uv.shape[1], corr_uv.shape[2]
    device = query_uv.device
    mask = torch.zeros(B, N, M, dtype=torch.bool, device=device)
    if N == 0 or M == 0 or K == 0:
        return mask
    row_h = float(window) / _ROWS_PER_WINDOW
    col_w = float(window) / _COLS_PER_WINDOW
    reach = float(window) * _WINDOW_MARGIN

    c_ok = corr_valid & (corr_depth > 0)  # non-finite projections fail the exact test
    cb, cm, ck = c_ok.nonzero(as_tuple=True)
    q_ok = (query_depth > 0) & torch.isfinite(query_uv).all(-1) & torch.isfinite(query_depth)
    qb, qn = q_ok.nonzero(as_tuple=True)
    if cb.numel() == 0 or qb.numel() == 0:
        return mask
    # Pack (u, v, depth) so that each pair needs one gather per side.
    # (Casting to the common dtype is exact, so the comparisons match the reference bit for bit.)
    dt = torch.promote_types(torch.promote_types(corr_uv.dtype, corr_depth.dtype),
                             torch.promote_types(query_uv.dtype, query_depth.dtype))
    c_data = torch.cat([corr_uv[cb, cm, ck], corr_depth[cb, cm, ck, None]], -1).to(dt)  # (P, 3)
    q_data = torch.cat([query_uv[qb, qn], query_depth[qb, qn, None]], -1).to(dt)  # (Q, 3)
    q_row = qb * N + qn  # (Q,) flat row of the mask

    # Sort correspondences by (batch, cell row, cell column).
    c_cells = _cell_index(c_data[:, :2].double(), torch.tensor([col_w, row_h], dtype=torch.float64, device=device))
    sorted_key, order = torch.sort(_cell_key(cb, c_cells[:, 1], c_cells[:, 0]))
    c_data, c_entry = c_data[order], cm[order]

    # For each query, the cell rows its widened window touches and, in each, the column range:
    # one contiguous range [lo, hi) of the sorted list per row.
    q64 = q_data[:, :2].double()
    row0 = _cell_index(q64[:, 1] - reach, row_h)
    row1 = _cell_index(q64[:, 1] + reach, row_h)
    col0 = _cell_index(q64[:, 0] - reach, col_w)
    col1 = _cell_index(q64[:, 0] + reach, col_w)
    rows = row0[:, None] + torch.arange(_MAX_ROWS, device=device)  # (Q, R)
    lo = torch.searchsorted(sorted_key, _cell_key(qb[:, None], rows, col0[:, None]))
    hi = torch.searchsorted(sorted_key, _cell_key(qb[:, None], rows, col1[:, None]), right=True)
    counts = torch.where(rows <= row1[:, None], hi - lo, 0)  # (Q, R)
    per_query = counts.sum(-1)  # (Q,)

    # Expand (query, correspondence) candidate pairs in chunks of queries with a bounded total.
    cum = torch.cumsum(per_query, 0)
    total = int(cum[-1])
    if total == 0:
        return mask
    n_chunks = (total + _MAX_PAIRS_PER_CHUNK - 1) // _MAX_PAIRS_PER_CHUNK
    bounds = torch.searchsorted(cum, torch.arange(1, n_chunks, device=device) * _MAX_PAIRS_PER_CHUNK)
    starts = [0, *[int(b) + 1 for b in bounds], qb.numel()]
    mask_flat = mask.view(-1)
    for s, e in zip(starts[:-1], starts[1:], strict=True):
        if e <= s:
            continue
        cnt = counts[s:e].reshape(-1)
        n_pairs = int(per_query[s:e].sum())
        if n_pairs == 0:
            continue
        # Pair p of segment j sits at sorted position lo[j] + (p - first pair of j).
        shift = lo[s:e].reshape(-1) - (torch.cumsum(cnt, 0) - cnt)
        pos = torch.arange(n_pairs, device=device) + torch.repeat_interleave(shift, cnt, output_size=n_pairs)
        qi = torch.repeat_interleave(torch.arange(s, e, device=device), per_query[s:e], output_size=n_pairs)
        q_pair = q_data.index_select(0, qi)  # (pairs, 3); index_select is much faster than [] here
        diff = (c_data.index_select(0, pos) - q_pair).abs()
        ok = (diff[:, 0] <= window) & (diff[:, 1] <= window) & (diff[:, 2] <= depth_tolerance * q_pair[:, 2])
        hit = torch.nonzero(ok).squeeze(1)
        flat = q_row.index_select(0, qi.index_select(0, hit)) * M + c_entry.index_select(0, pos.index_select(0, hit))
        mask_flat[flat] = True
    return mask


def _spread_bits(x: torch.Tensor) -> torch.Tensor:
    """Interleave zeros between the low 21 bits of non-negative int64 ``x`` (Morton helper)."""
    x = x & 0x1FFFFF
    x = (x | (x << 16)) & 0x0000FFFF0000FFFF
    x = (x | (x << 8)) & 0x00FF00FF00FF00FF
    x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0F
    x = (x | (x << 2)) & 0x3333333333333333
    x = (x | (x << 1)) & 0x5555555555555555
    return x


def spatial_row_keys(query_uv: torch.Tensor, cell: float) -> torch.Tensor:
    """(B, N, 2) pixel coordinates -> (B, N) int64 sort keys that group nearby queries.

    The key is the batch index followed by the Morton (Z-order) code of the query's cell, so
    queries sorted by it come in compact spatial blocks whatever their input order.
    Non-finite coordinates get cell 0.
    """
    B, N = query_uv.shape[:2]
    uv = torch.nan_to_num(query_uv.double(), nan=0.0, posinf=0.0, neginf=0.0).reshape(-1, 2)
    cx, cy = _cell_index(uv[:, 0], cell), _cell_index(uv[:, 1], cell)
    morton = _spread_bits(cx) | (_spread_bits(cy) << 1)
    # Clamped cells need 21 bits per axis -> 42 bits of Morton code; the batch goes above.
    b = torch.arange(B, device=query_uv.device).repeat_interleave(N)
    return ((b << 42) | (morton & ((1 << 42) - 1))).view(B, N)
