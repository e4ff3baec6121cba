"""Slow, obviously-correct reference implementations the fast paths are checked against."""

from __future__ import annotations

import geoopt.manifolds.stereographic.math as gmath
import torch


def nearest_codes_naive(x, codebook, c=None):
    """Materialises every (item, code) distance: (n, s, dim) differences."""
    if c is None:
        d = (x[:, None, :] - codebook[None, :, :]).pow(2).sum(-1)
    else:
        k = torch.tensor(-c, dtype=x.dtype)
        d = gmath.dist(x[:, None, :].expand(-1, codebook.shape[0], -1),
                       codebook[None].expand(x.shape[0], -1, -1), k=k)
    return d.argmin(dim=-1), d


def residual_quantize_naive(x, codebooks, c=None):
    """Row by row, level by level, with geoopt's Möbius operations; returns codes and y."""
    codes, ys = [], []
    k = None if c is None else torch.tensor(-c, dtype=x.dtype)
    for row in x:
        r, chosen, row_codes = row, [], []
        for cb in codebooks:
            if c is None:
                j = int(((cb - r) ** 2).sum(-1).argmin())
                chosen.append(cb[j])
                r = r - cb[j]
            else:
                j = int(gmath.dist(r.expand_as(cb), cb, k=k).argmin())
                chosen.append(cb[j])
                r = gmath.mobius_add(-cb[j], r, k=k)
            row_codes.append(j)
        y = chosen[-1]
        for e in reversed(chosen[:-1]):
            y = e + y if c is None else gmath.mobius_add(e, y, k=k)
        codes.append(row_codes)
        ys.append(y)
    return torch.tensor(codes), torch.stack(ys)


def closure_ranking(points, pairs, known, distance):
    """Nickel & Kiela's protocol, one pair at a time: rank among the row's negatives (ties
    one half) and the average precision of each hyponym's evaluated ancestors."""
    import numpy as np

    n = len(points)
    known_of = {}
    for u, v in known:
        known_of.setdefault(int(u), set()).add(int(v))
    evaluated_of = {}
    for u, v in pairs:
        evaluated_of.setdefault(int(u), []).append(int(v))
    ranks, precisions = [], []
    for u, positives in sorted(evaluated_of.items()):
        d = [float(distance(points[u], points[w])) for w in range(n)]
        negatives = [d[w] for w in range(n) if w != u and w not in known_of[u]]
        ap = []
        for v in positives:
            closer = sum(x < d[v] for x in negatives) + 0.5 * sum(x == d[v] for x in negatives)
            ranks.append(1 + closer)
            upto = sum(d[p] <= d[v] for p in positives)
            ap.append(upto / (upto + closer))
        precisions.append(sum(ap) / len(ap))
    return float(np.mean(ranks)), float(np.mean(precisions))
