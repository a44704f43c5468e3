"""Masked scaled-dot-product attention of query rows over a shared bank, with explicit weights.

``weights[b, n] = softmax_m(query[b, n] . bank[m] * scale)`` over the entries ``m`` allowed by
``mask[b, n]``, zero elsewhere; rows with no allowed entry get zero weights and zero output;
``output = weights @ bank``. Unlike ``torch.nn.functional.scaled_dot_product_attention`` the
weights are returned (the app draws them) and fully masked rows are zeros, not NaN.

Two strategies, equal up to float rounding:

* ``"dense"``: one (B, N, M) score matrix, masked softmax, one matmul;
* ``"blocks"``: the rows that attend to anything are sorted by a caller-given spatial key and
  cut into blocks of ``block_rows``; each block attends only to the union of its rows' allowed
  entries (padded to the largest union, all blocks in one batched matmul). With a sparse,
  spatially coherent mask (the correspondence mask) this does a small fraction of the dense work.
"""

from __future__ import annotations

import sys

import torch

__all__ = ["masked_attention"]

# Rows per block of the "blocks" strategy.
BLOCK_ROWS = 64
# "auto" picks "dense" above this fraction of allowed (row, entry) pairs, or on CUDA (where one
# large matmul is cheap and the gathers and host synchronisations of "blocks" are not).
DENSE_FRACTION = 0.25


def _any_last(mask: torch.Tensor) -> torch.Tensor:
    """``mask.any(-1)`` for a bool (..., M) mask, 8 columns per int64 word when the layout allows."""
    if mask.is_contiguous() and mask.shape[-1] % 8 == 0 and mask.numel():
        return mask.view(torch.int64).any(-1)
    return mask.any(-1)


def _any_middle(mask: torch.Tensor) -> torch.Tensor:
    """``mask.any(1)`` for a bool (nb, G, M) mask with G < 256: summing the int64 words (8 bool
    bytes each) over G cannot carry between bytes, so a byte of the sum is non-zero iff one of
    its G bools is set."""
    if mask.is_contiguous() and mask.shape[-1] % 8 == 0 and mask.shape[1] < 256 and sys.byteorder == "little":
        return mask.view(torch.int64).sum(1).view(torch.uint8) > 0
    return mask.any(1)


def _dense(
    query: torch.Tensor, bank: torch.Tensor, mask: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.matmul(query, bank.transpose(0, 1)) * scale  # (B, N, M)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    weights = torch.where(mask.any(-1, keepdim=True), weights, torch.zeros((), dtype=weights.dtype))
    return torch.matmul(weights, bank), weights


def _blocks(
    query: torch.Tensor,
    bank: torch.Tensor,
    mask: torch.Tensor,
    scale: float,
    row_keys: torch.Tensor | None,
    block_rows: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    B, N, D = query.shape
    M = bank.shape[0]
    G = block_rows
    weights = query.new_zeros(B * N, M)
    mask_rows = mask.reshape(B * N, M)
    flat = torch.nonzero(_any_last(mask_rows)).squeeze(1)  # rows with at least one allowed entry
    R = flat.numel()
    # Every row is written below when all are active; otherwise the others stay zero.
    out = query.new_empty(B * N, D) if R == B * N else query.new_zeros(B * N, D)
    if R == 0:
        return out.view(B, N, D), weights.view(B, N, M)
    if row_keys is not None:
        flat = flat[torch.argsort(row_keys.reshape(-1).index_select(0, flat), stable=True)]
    # Cut the rows into nb blocks of G (the last one padded with a repeated row, fully masked).
    nb = (R + G - 1) // G
    pad = nb * G - R
    rows = torch.cat([flat, flat[-1:].expand(pad)]) if pad else flat
    allowed = mask_rows.index_select(0, rows).view(nb, G, M)
    if pad:
        allowed[-1, G - pad :] = False
    # Each block's allowed entries (the union over its rows), first, padded to the largest union U.
    col_any = _any_middle(allowed)  # (nb, M)
    n_cols = col_any.sum(-1)
    U = int(n_cols.max())
    cols = torch.sort(col_any.to(torch.uint8), dim=-1, descending=True, stable=True)[1][:, :U]  # (nb, U)
    col_ok = torch.arange(U, device=cols.device)[None] < n_cols[:, None]
    allowed = torch.gather(allowed, 2, cols[:, None, :].expand(nb, G, U)) & col_ok[:, None, :]
    f = bank.index_select(0, cols.reshape(-1)).view(nb, U, D)
    q = query.reshape(B * N, D).index_select(0, rows).view(nb, G, D)
    scores = torch.bmm(q, f.transpose(1, 2)) * scale
    w = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    w = torch.where(allowed, w, torch.zeros((), dtype=w.dtype))  # padding rows: NaN -> 0
    out.index_copy_(0, flat, torch.bmm(w, f).view(nb * G, D)[:R])
    # Padding columns are entries outside the block's union (the sort puts them after it), so
    # every (row, column) written is distinct and the padding writes are zeros where zeros are.
    idx = (rows.view(nb, G, 1) * M + cols[:, None, :]).reshape(-1)[: R * U]
    weights.view(-1).index_put_((idx,), w.reshape(-1)[: R * U])
    return out.view(B, N, D), weights.view(B, N, M)


def masked_attention(
    query: torch.Tensor,
    bank: torch.Tensor,
    mask: torch.Tensor,
    scale: float,
    strategy: str = "auto",
    row_keys: torch.Tensor | None = None,
    block_rows: int = BLOCK_ROWS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of every query row over the allowed bank entries.

    Args:
        query: (B, N, D) query features.
        bank: (M, D) keys, which are also the values.
        mask: (B, N, M) bool, True where row ``(b, n)`` may attend to entry ``m``.
        scale: logit scale, usually ``1 / sqrt(D)``.
        strategy: ``"auto"``, ``"dense"`` or ``"blocks"`` (see the module docstring).
        row_keys: optional (B, N) int64 keys; rows sorted by them form the blocks of ``"blocks"``.
        block_rows: rows per block of ``"blocks"``.
    Returns:
        output (B, N, D) and weights (B, N, M); rows with no allowed entry are zero in both.
    """
    if strategy not in ("auto", "dense", "blocks"):
        raise ValueError(f"strategy must be 'auto', 'dense' or 'blocks', got {strategy!r}")
    if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows <= 0:
        raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")
    if strategy == "auto":
        dense = query.is_cuda or mask.numel() == 0 or int(mask.count_nonzero()) > DENSE_FRACTION * mask.numel()
        strategy = "dense" if dense else "blocks"
    if strategy == "dense":
        return _dense(query, bank, mask, scale)
    return _blocks(query, bank, mask, scale, row_keys, block_rows)
