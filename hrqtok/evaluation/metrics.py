"""Retrieval metrics over ranked generations (TIGER / HRQ paper Appendix B.2)."""

from __future__ import annotations

import math

import numpy as np


def hit_positions(beams: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """beams (q, W, L) ranked best first, targets (q, L) -> (q,) 0-based position of the
    target among the beams, or -1 when it is not there."""
    equal = (beams == targets[:, None, :]).all(-1)  # (q, W)
    return np.where(equal.any(1), equal.argmax(1), -1)


def recall_at(positions: np.ndarray, k: int) -> float:
    """Share of queries whose target is among the first k beams."""
    return float(((positions >= 0) & (positions < k)).mean()) if len(positions) else float("nan")


def ndcg_at(positions: np.ndarray, k: int) -> float:
    """Mean NDCG@k with one relevant item per query: 1 / log2(2 + position) inside the first
    k, else 0 (the ideal DCG is 1)."""
    if not len(positions):
        return float("nan")
    inside = (positions >= 0) & (positions < k)
    return float(np.where(inside, 1.0 / np.log2(2.0 + np.maximum(positions, 0)), 0.0).mean())


def clustered_standard_error(hits: np.ndarray, groups: np.ndarray) -> float:
    """Standard error of the mean of ``hits`` (m,) when the rows of one group (the held-out
    pairs of one noun) are not independent: the cluster-robust formula over groups,
    sqrt(G / (G - 1) · Σ_g (Σ_{i∈g} (h_i - mean))²) / m. With one row per group it is the
    usual std / sqrt(m) (ddof 1); NaN with fewer than two groups."""
    _, group = np.unique(groups, return_inverse=True)
    count = int(group.max()) + 1 if len(group) else 0
    if count < 2:
        return float("nan")
    hits = np.asarray(hits, dtype=float)
    residual = np.bincount(group, weights=hits - hits.mean(), minlength=count)
    return float(math.sqrt(count / (count - 1) * (residual ** 2).sum()) / len(hits))
