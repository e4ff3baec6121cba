"""Retrieval metrics over ranked generations (TIGER / HRQ paper Appendix B.2)."""

from __future__ import annotations

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
