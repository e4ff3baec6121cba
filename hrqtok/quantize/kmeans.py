"""Seeded k-means (k-means++ seeding, then Lloyd iterations) on a manifold: codebook
initialisation, and the whole of the residual k-means tokenizers.

Points are assigned by the manifold's distance and a cluster's centre is its midpoint. On the
ball that is the Einstein midpoint, optionally refined towards the Fréchet mean (the minimiser
of the summed squared distances) by Karcher steps, and a new centre only replaces the old one
where it lowers the cluster's summed squared distance, so the objective never increases (in
flat space the mean is the exact minimiser and needs no such check).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from hrqtok.config import CENTROIDS
from hrqtok.geometry import Manifold
from hrqtok.quantize.balance import balanced_assignment

KARCHER_STEPS = 5  # Riemannian gradient steps from the Einstein midpoint towards the Fréchet mean

# progress(iteration, iterations, objective) after each Lloyd iteration
IterationFn = Callable[[int, int, float], None]


class KMeansResult(NamedTuple):
    centroids: Tensor  # (k, d)
    objective: list[float]  # Σ d(x, nearest centroid)² after seeding and after each iteration
    iterations: int  # Lloyd iterations run (fewer than asked when assignments stopped changing)


def kmeans_plus_plus(x: Tensor, k: int, *, manifold: Manifold,
                     generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007). x: (n, d) -> (k, d), k <= n."""
    n = x.shape[0]
    # draws come from the CPU generator (the same on every device), indices go to x's device
    first = torch.randint(n, (1,), generator=generator).to(x.device)
    centroids = [x[first]]
    closest = manifold.squared_dist(x, x[first])
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # every point already coincides with a centroid
            pick = torch.randint(n, (1,), generator=generator).to(x.device)
        else:
            pick = torch.multinomial((closest / total).cpu(), 1, generator=generator).to(x.device)
        centroids.append(x[pick])
        closest = torch.minimum(closest, manifold.squared_dist(x, x[pick]))
    return torch.cat(centroids)


def _cluster_cost(x: Tensor, assign: Tensor, centres: Tensor, manifold: Manifold) -> Tensor:
    """(k,) summed squared distance from each cluster's points to its centre."""
    return torch.zeros(len(centres), dtype=x.dtype, device=x.device).index_add_(
        0, assign, manifold.squared_dist(x, centres[assign]))


def _means(x: Tensor, assign: Tensor, centroids: Tensor, manifold: Manifold,
           centroid: str) -> Tensor:
    """Each cluster's centre; an empty cluster keeps its centroid instead of collapsing to 0.

    Fréchet: Karcher steps m <- exp_m(η · mean of log_m(x_i)) from the Einstein midpoint. Near
    the boundary a full step can overshoot, so a step is kept only where it lowers the
    cluster's cost, and a rejected cluster halves its η."""
    k = len(centroids)
    counts = torch.bincount(assign, minlength=k).unsqueeze(-1)
    means = manifold.midpoint(x, assign, k)
    if centroid == "frechet" and not manifold.flat:
        rate = torch.ones(k, 1, dtype=x.dtype, device=x.device)
        cost = _cluster_cost(x, assign, means, manifold)
        for _ in range(KARCHER_STEPS):
            tangent = manifold.logmap(means[assign], x)
            step = torch.zeros_like(means).index_add_(0, assign, tangent)
            proposal = manifold.expmap(means, rate * step / counts.clamp_min(1).to(x.dtype))
            proposal_cost = _cluster_cost(x, assign, proposal, manifold)
            better = (proposal_cost < cost).unsqueeze(-1)
            means = torch.where(better, proposal, means)
            cost = torch.where(better.squeeze(-1), proposal_cost, cost)
            rate = torch.where(better, rate, rate / 2)
    return torch.where(counts > 0, means, centroids)


def _keep_better(x: Tensor, assign: Tensor, old: Tensor, new: Tensor,
                 manifold: Manifold) -> Tensor:
    """Per cluster, whichever centre has the smaller summed squared distance to its points."""
    better = _cluster_cost(x, assign, new, manifold) <= _cluster_cost(x, assign, old, manifold)
    return torch.where(better.unsqueeze(-1), new, old)


def _reseed_empty(x: Tensor, assign: Tensor, cost: Tensor, centroids: Tensor) -> Tensor:
    """Move the centres of empty clusters onto the worst-served points (distinct ones)."""
    empty = torch.nonzero(torch.bincount(assign, minlength=len(centroids)) == 0).squeeze(-1)
    if not len(empty):
        return centroids
    worst = cost.argsort(descending=True)[: len(empty)]
    centroids = centroids.clone()
    centroids[empty[: len(worst)]] = x[worst]
    return centroids


def kmeans(x: Tensor, k: int, *, manifold: Manifold, iters: int, generator: torch.Generator,
           centroid: str = "frechet", progress: IterationFn | None = None,
           balanced: bool = False) -> KMeansResult:
    """k-means of x (n, d) into k clusters on ``manifold``; ``centroid`` ("frechet" or
    "einstein") says how far curved centres are refined. ``balanced``: points are assigned
    with uniform cluster sizes (Sinkhorn-Knopp, ``balance.py``) instead of to the nearest
    centre: balanced k-means. Its objective may then rise between iterations.

    With fewer points than clusters, the extra centroids are copies of random points plus a
    little noise: training's dead-code revival moves them where they are needed.
    """
    if centroid not in CENTROIDS:
        raise ValueError(f"centroid must be one of {CENTROIDS}, got {centroid!r}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one point")
    def assign_to(centres: Tensor) -> Tensor:
        if balanced:
            return balanced_assignment(manifold.squared_distances(x, centres))
        return manifold.nearest(x, centres)

    k_real = min(k, n)
    centroids = kmeans_plus_plus(x, k_real, manifold=manifold, generator=generator)
    assign = assign_to(centroids)
    cost = manifold.squared_dist(x, centroids[assign])
    objective, done = [float(cost.sum())], 0
    for done in range(1, iters + 1):
        moved = _means(x, assign, centroids, manifold, centroid)
        if not manifold.flat:
            moved = _keep_better(x, assign, centroids, moved, manifold)
        centroids = _reseed_empty(x, assign, cost, moved)
        new_assign = assign_to(centroids)
        cost = manifold.squared_dist(x, centroids[new_assign])
        objective.append(float(cost.sum()))
        if progress:
            progress(done, iters, objective[-1])
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    if k_real < k:
        extra = x[torch.randint(n, (k - k_real,), generator=generator).to(x.device)]
        scale = x.std() if n > 1 else x.abs().mean()
        noise = torch.randn(extra.shape, generator=generator, dtype=x.dtype).to(x.device) * 1e-2 * scale
        extra = extra + noise
        centroids = torch.cat([centroids, manifold.project(extra)])
    return KMeansResult(centroids, objective, done)


def inertia(x: Tensor, centroids: Tensor, *, manifold: Manifold) -> float:
    """Sum of squared distances to the nearest centroid (the k-means objective)."""
    assign = manifold.nearest(x, centroids)
    return float(manifold.squared_dist(x, centroids[assign]).sum())
