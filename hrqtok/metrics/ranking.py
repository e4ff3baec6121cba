"""Closure reconstruction Mean Rank and MAP (Nickel & Kiela 2017, §4.1).

For every evaluated pair (u, v), v an ancestor of u, the rank of d(u, v) among the distances
from u to its ground-truth negatives: every node that is not u and not a known ancestor of u
(``known`` holds the whole closure, so other true pairs never count against a pair: the
"filtered" setting). Rank = 1 + the number of negatives closer than v; a negative at exactly
the same distance counts one half, which matters for quantized points that coincide. MAP is
the mean over hyponyms u of the average precision of u's evaluated ancestors among them and
the negatives.

The search is exact but never sorts a row: one matrix product gives the scores of a chunk of
rows, and each negative is placed among its row's few positives (by a compiled loop for
float64 on the CPU, ``rank_kernels``; by binary search otherwise), so the cost does not grow
with how badly a hypernym is ranked.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from hrqtok.geometry import Manifold

CHUNK_ELEMENTS = 1 << 24  # (rows × nodes) scores per chunk: 128 MiB in float64
COMPILED = True  # _buckets on the CPU runs rank_kernels' loop (tests turn it off)


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
    sets = {name: _by_hyponym(np.asarray(p, dtype=np.int64).reshape(-1, 2))
            for name, p in evaluated.items()}
    ranks: dict[str, list] = {name: [] for name in sets}
    precisions: dict[str, list] = {name: [] for name in sets}
    for name, rank, precision, _ in _ranked_chunks(points, sets, known, manifold, progress):
        ranks[name].append(rank)
        precisions[name].append(precision)
    out = {}
    for name, pairs in sets.items():
        rank = np.concatenate(ranks[name] + [np.zeros(0)])
        ap = np.concatenate(precisions[name] + [np.zeros(0)])
        empty = len(rank) == 0
        out[name] = {"mean_rank": float("nan") if empty else float(rank.mean()),
                     "map": float("nan") if empty else float(ap.mean()),
                     "pairs": int(len(pairs)), "hyponyms": int(len(ap))}
    return out


def worst_ranks(points: Tensor, pairs: np.ndarray, known: np.ndarray, *,
                manifold: Manifold) -> tuple[np.ndarray, np.ndarray]:
    """Each hyponym of ``pairs`` (sorted) and the rank of its worst-placed hypernym among
    ``pairs``: that of its farthest one, as ranks grow with distance (``closure_ranking``'s
    ranks, filtered by ``known``)."""
    pairs = _by_hyponym(np.asarray(pairs, dtype=np.int64).reshape(-1, 2))
    worst = [np.zeros(0)]
    for _, rank, _, counts in _ranked_chunks(points, {"": pairs}, known, manifold, None):
        if len(counts):  # a chunk's ranks come row by row, each row's in distance order
            worst.append(rank[np.cumsum(counts) - 1])
    return np.unique(pairs[:, 0]), np.concatenate(worst)


def _ranked_chunks(points: Tensor, sets: dict[str, np.ndarray], known: np.ndarray,
                   manifold: Manifold, progress: Callable | None):
    """One pass over the score matrix in chunks of hyponyms: for each chunk and each set of
    pairs (sorted by hyponym) with pairs in it, (name, ranks, average precisions, how many of
    the ranks each of the chunk's hyponyms has), the hyponyms in order."""
    points = points.detach().to(torch.float64)
    n = len(points)
    known = _by_hyponym(np.asarray(known, dtype=np.int64).reshape(-1, 2))
    hyponyms = np.unique(np.concatenate([p[:, 0] for p in sets.values()] + [np.zeros(0, np.int64)]))
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, len(hyponyms), rows_per_chunk):
        rows = hyponyms[start:start + rows_per_chunk]
        # distance keys order each row by distance; the positives are read off first, then
        # everything that is not a negative (the row itself, its known ancestors) becomes +inf
        scores = manifold.distance_keys(points[torch.from_numpy(rows)], points,
                                        across_rows=False)  # (R, n)
        positives = {name: _positives(scores, rows, pairs) for name, pairs in sets.items()}
        _mask_known(scores, rows, known)
        for name, found in positives.items():
            if found:
                rank, precision = _rank_rows(scores, *found)
                yield name, rank, precision, (~found[1].isinf()).sum(1).numpy()
            else:
                yield name, np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
        if progress:
            progress("evaluate", start + len(rows), len(hyponyms), None)


def _mask_known(scores: Tensor, rows: np.ndarray, known: np.ndarray) -> None:
    """In place: +inf where a row meets itself or one of its known ancestors."""
    lo, hi = np.searchsorted(known[:, 0], rows), np.searchsorted(known[:, 0], rows, "right")
    scores[np.repeat(np.arange(len(rows)), hi - lo), known[_ranges(lo, hi), 1]] = float("inf")
    scores[np.arange(len(rows)), rows] = float("inf")


def _positives(scores: Tensor, rows: np.ndarray, pairs: np.ndarray) -> tuple[Tensor, Tensor] | None:
    """The chunk rows with pairs in ``pairs`` (their positions in ``rows``), and their
    hypernyms' scores as a sorted padded (R, D) matrix, +inf marking padding (last); None
    when no row has a pair. Ranks and AP do not depend on the positives' order."""
    lo, hi = np.searchsorted(pairs[:, 0], rows), np.searchsorted(pairs[:, 0], rows, "right")
    present = hi > lo
    if not present.any():
        return None
    lo, hi, local = lo[present], hi[present], np.flatnonzero(present)
    pos_idx = _ranges(lo, hi)
    pos_row = np.repeat(np.arange(len(local)), hi - lo)
    pos_col = pos_idx - np.repeat(lo, hi - lo)
    positive = torch.full((len(local), int((hi - lo).max())), float("inf"), dtype=scores.dtype)
    positive[pos_row, pos_col] = scores[local[pos_row], pairs[pos_idx, 1]]
    return torch.from_numpy(local), positive.sort(dim=1).values


def _rank_rows(negatives: Tensor, local: Tensor, positive: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of the positives of the chunk rows ``local`` and each such row's average
    precision, against the chunk's ``negatives`` (R, n) (+inf where not a negative)."""
    valid = ~positive.isinf()
    # each negative counted once against all of its row's positives: below how many of them
    # does it fall (strictly, and with ties)? Cumulated, that is how many negatives lie
    # closer than each positive, whatever the depth of the farthest one
    first_above, first_at_or_above = _buckets(positive, valid, negatives, local)
    closer = first_above.cumsum(1)[:, :-1]  # negatives < positive j
    tied = first_at_or_above.cumsum(1)[:, :-1] - closer  # negatives == positive j
    negatives_closer = closer.double() + 0.5 * tied  # ties count one half
    # positives at or before each positive (itself included), for its precision
    positives_upto = (positive.unsqueeze(1) <= positive.unsqueeze(2)).sum(2)
    precision = positives_upto / (positives_upto + negatives_closer)
    rank = (1 + negatives_closer)[valid]
    average_precision = (precision * valid).sum(1) / valid.sum(1)
    return rank.numpy(), average_precision.numpy()


def _buckets(positive: Tensor, valid: Tensor, negatives: Tensor,
             local: Tensor) -> tuple[Tensor, Tensor]:
    """(L, D + 1) counts for the L chunk rows ``local`` with positives (L, D): how many of a
    row's negatives (a row of ``negatives`` (R, n)) have i of its positives <= them (column
    i), and how many have i positives < them. Each negative is counted once against all of
    its row's positives.

    Only negatives at or inside a row's farthest positive change a rank (the rest land past
    its last positive), and a fair embedding has few of them: hundreds of the 82,115 nouns. So
    those alone are placed when they are few; the full search over every negative is the
    fallback (an untrained embedding, where most negatives sit inside the farthest ancestor).
    """
    rows, width = positive.shape
    buckets = width + 1
    if COMPILED and negatives.device.type == "cpu" and negatives.dtype == positive.dtype == torch.float64:
        from hrqtok.metrics import rank_kernels  # numba: imported where a report ranks
        from hrqtok.quantize.walk_kernels import set_threads

        set_threads(torch.get_num_threads())
        counts = [np.zeros((rows, buckets), dtype=np.int64) for _ in range(2)]
        rank_kernels.place_negatives(negatives.contiguous().numpy(), local.numpy(),
                                     positive.contiguous().numpy(), valid.sum(1).numpy(), *counts)
        return tuple(torch.from_numpy(c) for c in counts)
    farthest = positive.gather(1, (valid.sum(1, keepdim=True) - 1).clamp_min(0))
    limit = torch.full((len(negatives), 1), float("-inf"), dtype=negatives.dtype)
    limit[local] = farthest
    chunk_row, col = (negatives <= limit).nonzero(as_tuple=True)
    sides = ("right", "left")
    if len(chunk_row) * width > rows * negatives.shape[1]:
        mine = negatives.index_select(0, local)
        ones = torch.ones_like(mine, dtype=torch.long)
        return tuple(torch.zeros(rows, buckets, dtype=torch.long).scatter_add_(
            1, torch.searchsorted(positive, mine, side=side), ones) for side in sides)
    slot = torch.full((len(negatives),), -1, dtype=torch.long)
    slot[local] = torch.arange(rows)
    row = slot[chunk_row]
    values, bounds = negatives[chunk_row, col].unsqueeze(1), positive[row]
    # a negative with i positives <= it is closer than positives i, i + 1, …; with i positives
    # < it, it is closer than or tied with them
    place = {side: torch.searchsorted(bounds, values, side=side).squeeze(1) for side in sides}
    return tuple(torch.bincount(row * buckets + place[side], minlength=rows * buckets)
                 .view(rows, buckets) for side in sides)
