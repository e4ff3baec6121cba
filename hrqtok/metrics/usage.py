"""Codebook usage and collision statistics of code tables (numpy in, plain dicts out)."""

from __future__ import annotations

import math

import numpy as np


def level_usage(codes: np.ndarray, size: int) -> dict:
    """Usage of one level. codes: (n,) ints in [0, size).

    perplexity = exp(H) of the code distribution (size when uniform, 1 when collapsed);
    normalised_entropy = H / log(size).
    """
    return usage_from_counts(np.bincount(codes, minlength=size), size)


def usage_from_counts(counts: np.ndarray, size: int) -> dict:
    """``level_usage`` of a level given how many items took each of its ``size`` codes."""
    counts = np.asarray(counts).astype(np.float64)
    n = counts.sum()
    p = counts[counts > 0] / n if n else np.array([1.0])
    entropy = float(-(p * np.log(p)).sum())
    used = int((counts > 0).sum())
    return {
        "used": used,
        "size": size,
        "utilisation": used / size,
        "perplexity": math.exp(entropy),
        "normalised_entropy": entropy / math.log(size),
        "largest_share": float(counts.max() / n) if n else 0.0,
        "dead": size - used,
    }


def collision_stats(codes: np.ndarray) -> dict:
    """Collisions of full k-code IDs. codes: (n, k).

    collision_rate is the share of items whose k codes are shared with another item;
    largest_group is the disambiguation vocabulary needed.
    """
    n = codes.shape[0]
    if n == 0:
        return {"items": 0, "distinct_ids": 0, "collision_rate": 0.0, "largest_group": 0}
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return {
        "items": int(n),
        "distinct_ids": int(len(counts)),
        "collision_rate": float(counts[counts > 1].sum() / n),
        "largest_group": int(counts.max()),
    }


def prefix_stats(codes: np.ndarray) -> list[dict]:
    """Distinct prefixes per depth and mean branching (children per prefix of the depth above)."""
    out, previous = [], 1
    for depth in range(1, codes.shape[1] + 1):
        distinct = len(np.unique(codes[:, :depth], axis=0)) if len(codes) else 0
        out.append({"depth": depth, "prefixes": distinct, "branching": distinct / max(previous, 1)})
        previous = distinct
    return out
