"""Synthetic catalogues on which tokenizers have been seen to collapse (issue 14): seeded
vectors, the codebook shape each is fitted with, and what "not collapsed" means for it.

A catalogue's bounds are per-level perplexity floors (None: no floor, where the levels above
already set the items apart and the level has nothing left to split) and a ceiling on the
collision rate, read against the birthday bound: n items spread uniformly over s^k ids collide
at a rate of about 1 - exp(-n / s^k). Structure lets a tokenizer beat that bound (the
hierarchy), or makes it unreachable (tight clusters leave the deep levels only noise to
split). ``distinct`` marks rows that must not share an id with one another (near-duplicates
may, and should, share one); bounds are measured on those rows.

The suite in tests/test_catalogues.py asserts the bounds for every quantizer;
benchmarks/compare_catalogues.py prints the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Catalogue:
    name: str
    vectors: np.ndarray  # (n, dim) float32
    levels: int
    codebook_size: int
    min_perplexity: tuple[float | None, ...]  # per level
    max_collision_rate: float
    distinct: np.ndarray | None = field(default=None)  # rows whose ids must differ

    @property
    def birthday_rate(self) -> float:
        """Expected collision rate of uniformly random ids: the floor any tokenizer meets."""
        n = len(self.vectors) if self.distinct is None else len(self.distinct)
        return 1 - math.exp(-(n - 1) / self.codebook_size ** self.levels)


def tight_clusters_with_labels(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """400 vectors in 8 tight clusters, 64-d (centres N(0, 1), noise 0.05): the issue's
    case; and each vector's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, 64))
    labels = rng.integers(8, size=400)
    x = centres[labels] + 0.05 * rng.normal(size=(400, 64))
    return x.astype(np.float32), labels


def tight_clusters(seed: int = 0) -> np.ndarray:
    return tight_clusters_with_labels(seed)[0]


def nested_clusters(seed: int = 0) -> np.ndarray:
    """A 3-level hierarchy, 8 × 8 × 8 clusters in 32-d, two items per leaf: 1,024 vectors.
    Each level's offsets are a quarter of the one above's; the two items of a leaf differ by
    a quarter of that again (near-duplicates, which may share an id). With 3 levels of 64
    codes the first level can name the 64 middle clusters (residual codebooks are shared
    across branches, so 8 codes could not name 64 different offsets)."""
    rng = np.random.default_rng(seed)
    top = rng.normal(size=(8, 32))
    mid = top[:, None] + 0.25 * rng.normal(size=(8, 8, 32))
    leaf = mid[:, :, None] + 0.0625 * rng.normal(size=(8, 8, 8, 32))
    items = np.repeat(leaf.reshape(-1, 32), 2, axis=0)
    return (items + 0.015 * rng.normal(size=items.shape)).astype(np.float32)


def near_duplicates(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """200 distinct 64-d vectors with two near copies each (relative noise 1e-3): 600 rows.
    Returns the vectors and the rows of one copy of each."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(200, 64))
    rows = np.repeat(base, 3, axis=0)
    rows += 1e-3 * rng.normal(size=rows.shape) * np.linalg.norm(rows, axis=1, keepdims=True) / 8
    return rows.astype(np.float32), np.arange(0, 600, 3)


def catalogues(seed: int = 0) -> list[Catalogue]:
    """The suite. The floors and ceilings are what "not collapsed" means on each: a level
    that falls to a few codes, or collisions far above the birthday bound, fail."""
    tight = tight_clusters(seed)
    duplicates, distinct = near_duplicates(seed)
    return [
        Catalogue("tight-clusters", tight, 3, 16, (6, 10, 10), 0.35),
        Catalogue("nested-8x8x8", nested_clusters(seed), 3, 64, (32, 8, 8), 0.20,
                  np.arange(0, 1024, 2)),
        Catalogue("tiny-norm", tight * 1e-4, 3, 16, (6, 10, 10), 0.35),
        Catalogue("huge-norm", tight * 1e4, 3, 16, (6, 10, 10), 0.35),
        Catalogue("near-duplicates", duplicates, 3, 16, (6, 10, 10), 0.15, distinct),
        # few items for s^k: 120 items in 8 clusters, 3 × 256 (the default s)
        Catalogue("few-items", tight_clusters(seed + 1)[:120], 3, 256, (6, None, None), 0.15),
    ]
