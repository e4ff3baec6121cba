"""Seeded k-means (k-means++ seeding, then Lloyd iterations) for codebook initialisation."""

from __future__ import annotations

import torch
from torch import Tensor

from hrqtok.geometry import nearest_codes


def kmeans_plus_plus(x: Tensor, k: int, *, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007). x: (n, d) -> (k, d), k <= n."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator)
    centroids = [x[first]]
    closest = (x - x[first]).pow(2).sum(-1)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # every point already coincides with a centroid
            pick = torch.randint(n, (1,), generator=generator)
        else:
            pick = torch.multinomial(closest / total, 1, generator=generator)
        centroids.append(x[pick])
        closest = torch.minimum(closest, (x - x[pick]).pow(2).sum(-1))
    return torch.cat(centroids)


def kmeans(x: Tensor, k: int, *, iters: int, generator: torch.Generator) -> Tensor:
    """Euclidean k-means. x: (n, d) -> centroids (k, d).

    With fewer points than clusters, the extra centroids are copies of random points plus a
    little noise: training's dead-code revival moves them where they are needed.
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one point")
    k_real = min(k, n)
    centroids = kmeans_plus_plus(x, k_real, generator=generator)
    for _ in range(iters):
        assign = nearest_codes(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k_real).unsqueeze(-1).to(x.dtype)
        # An empty cluster keeps its centroid instead of collapsing to 0.
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    if k_real < k:
        extra = x[torch.randint(n, (k - k_real,), generator=generator)]
        scale = x.std() if n > 1 else x.abs().mean()
        noise = torch.randn(extra.shape, generator=generator, dtype=x.dtype) * 1e-2 * scale
        centroids = torch.cat([centroids, extra + noise])
    return centroids


def inertia(x: Tensor, centroids: Tensor) -> float:
    """Sum of squared distances to the nearest centroid (the k-means objective)."""
    assign = nearest_codes(x, centroids)
    return float((x - centroids[assign]).pow(2).sum())
