"""Closure reconstruction Mean Rank and MAP (Nickel & Kiela 2017, §4.1).

For every evaluated pair (u, v), v an ancestor of u, the rank of d(u, v) among the distances
from u to its ground-truth negatives: every node that is not u and not a known ancestor of u
(``known`` holds the whole closure, so other true pairs never count against a pair: the
"filtered" setting). Rank = 1 + the number of negatives closer than v; a negative at exactly
the same distance counts one half, which matters for quantized points that coincide. MAP is
the mean over hyponyms u of the average precision of u's evaluated ancestors among them and
the negatives.

The search is exact but never sorts a row: one matrix product gives the scores of a chunk of
rows, and each negative is placed among its row's few positives by binary search, so the cost
does not grow with how badly a hypernym is ranked.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from hrqtok.geometry import Manifold

CHUNK_ELEMENTS = 1 << 24  # (rows × nodes) scores per chunk: 128 MiB in float64


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of arange(lo[i], hi[i]) for all i, without a Python loop."""
    counts = hi - lo
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return np.arange(counts.sum()) + starts


def _by_hyponym(pairs: np.ndarray) -> np.ndarray:
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def closure_ranking(points: Tensor, evaluated: dict[str, np.ndarray], known: np.ndarray, *,
                    manifold: Manifold, progress: Callable | None = None) -> dict[str, dict]:
    """Mean rank and MAP of each set of (hyponym, hypernym) pairs in ``evaluated`` (name ->
    (m, 2) rows), given node ``points`` (n, dim) and all ``known`` closure pairs (a superset
    of every evaluated set). One pass over the score matrix serves all sets.

    Returns name -> {"mean_rank", "map", "pairs", "hyponyms"}; NaN metrics for an empty set.
    ``progress("evaluate", done, total, None)`` is called after each chunk of hyponyms.
    """
    points = points.detach().to(torch.float64)
    n = len(points)
    known = _by_hyponym(np.asarray(known, dtype=np.int64).reshape(-1, 2))
    sets = {name: _by_hyponym(np.asarray(p, dtype=np.int64).reshape(-1, 2))
            for name, p in evaluated.items()}
    hyponyms = np.unique(np.concatenate([p[:, 0] for p in sets.values()] + [np.zeros(0, np.int64)]))
    ranks: dict[str, list] = {name: [] for name in sets}
    precisions: dict[str, list] = {name: [] for name in sets}
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, len(hyponyms), rows_per_chunk):
        rows = hyponyms[start:start + rows_per_chunk]
        scores = _negative_scores(points, rows, known, manifold)
        for name, pairs in sets.items():
            r, p = _rank_chunk(scores, rows, pairs)
            ranks[name].append(r)
            precisions[name].append(p)
        if progress:
            progress("evaluate", start + len(rows), len(hyponyms), None)
    out = {}
    for name, pairs in sets.items():
        rank = np.concatenate(ranks[name] + [np.zeros(0)])
        ap = np.concatenate(precisions[name] + [np.zeros(0)])
        empty = len(rank) == 0
        out[name] = {"mean_rank": float("nan") if empty else float(rank.mean()),
                     "map": float("nan") if empty else float(ap.mean()),
                     "pairs": int(len(pairs)), "hyponyms": int(len(ap))}
    return out


def _negative_scores(points: Tensor, rows: np.ndarray, known: np.ndarray,
                     manifold: Manifold) -> tuple[Tensor, Tensor]:
    """Scores of ``rows`` against all nodes (the manifold's distance keys, which order each
    row by distance), and a copy where everything that is not a negative (the row itself,
    its known ancestors) is +inf."""
    queries = points[torch.from_numpy(rows)]
    scores = manifold.distance_keys(queries, points, across_rows=False)  # (R, n)
    negatives = scores.clone()
    lo, hi = np.searchsorted(known[:, 0], rows), np.searchsorted(known[:, 0], rows, "right")
    negatives[np.repeat(np.arange(len(rows)), hi - lo), known[_ranges(lo, hi), 1]] = float("inf")
    negatives[np.arange(len(rows)), rows] = float("inf")
    return scores, negatives


def _rank_chunk(scored: tuple[Tensor, Tensor], rows: np.ndarray,
                pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of the pairs of ``rows`` and the average precision of each such row."""
    scores, negatives = scored
    lo, hi = np.searchsorted(pairs[:, 0], rows), np.searchsorted(pairs[:, 0], rows, "right")
    present = hi > lo
    if not present.any():
        return np.zeros(0), np.zeros(0)
    lo, hi, local = lo[present], hi[present], np.flatnonzero(present)
    scores, negatives = scores[local], negatives[local]
    # positives as a padded (R, D) matrix of scores; +inf marks padding
    pos_idx = _ranges(lo, hi)
    pos_row = np.repeat(np.arange(len(local)), hi - lo)
    pos_col = pos_idx - np.repeat(lo, hi - lo)
    positive = torch.full((len(local), int((hi - lo).max())), float("inf"), dtype=scores.dtype)
    positive[pos_row, pos_col] = scores[pos_row, pairs[pos_idx, 1]]
    positive = positive.sort(dim=1).values  # padding last; ranks and AP ignore the order
    valid = ~positive.isinf()
    # each negative counted once against all of its row's positives: below how many of them
    # does it fall (strictly, and with ties)? Cumulated, that is how many negatives lie
    # closer than each positive, whatever the depth of the farthest one
    buckets = positive.shape[1] + 1
    ones = torch.ones_like(negatives, dtype=torch.long)
    # a negative with i positives <= it is closer than positives i, i + 1, …
    first_above = torch.zeros(len(local), buckets, dtype=torch.long).scatter_add_(
        1, torch.searchsorted(positive, negatives, side="right"), ones)
    # with i positives < it, it is closer than or tied with positives i, i + 1, …
    first_at_or_above = torch.zeros(len(local), buckets, dtype=torch.long).scatter_add_(
        1, torch.searchsorted(positive, negatives, side="left"), ones)
    closer = first_above.cumsum(1)[:, :-1]  # negatives < positive j
    tied = first_at_or_above.cumsum(1)[:, :-1] - closer  # negatives == positive j
    negatives_closer = closer.double() + 0.5 * tied  # ties count one half
    # positives at or before each positive (itself included), for its precision
    positives_upto = (positive.unsqueeze(1) <= positive.unsqueeze(2)).sum(2)
    precision = positives_upto / (positives_upto + negatives_closer)
    rank = (1 + negatives_closer)[valid]
    average_precision = (precision * valid).sum(1) / valid.sum(1)
    return rank.numpy(), average_precision.numpy()
