"""Closure MR / MAP against a one-pair-at-a-time reference (Nickel & Kiela's protocol)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrqtok import geometry
from hrqtok.geometry import Euclidean, PoincareBall
from hrqtok.metrics import ranking
from hrqtok.metrics.ranking import closure_ranking
from hrqtok.sources.hierarchy import split_pairs, transitive_closure
from tests import reference
from tests.conftest import tree_parents
from tests.test_hierarchy import random_dag


@pytest.fixture(params=[True, False], ids=["compiled", "tensor"])
def compiled(request, monkeypatch):
    """Each ranking test runs the compiled placement loop and the tensor path."""
    monkeypatch.setattr(ranking, "COMPILED", request.param)
    return request.param


def _points(n, dim, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return geometry.project(torch.randn(n, dim, generator=g, dtype=torch.float64) * scale, c=1.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("c", [1.0, None])
def test_matches_reference(seed, c, compiled):
    parents = random_dag(50, seed)
    pairs = transitive_closure(parents)
    test = split_pairs(len(pairs), 0.3, seed)
    points = _points(50, 3, seed)
    got = closure_ranking(points, {"train": pairs[~test], "test": pairs[test]}, pairs,
                          manifold=PoincareBall(c) if c else Euclidean())
    distance = (lambda a, b: geometry.dist(a, b, c=c)) if c else (lambda a, b: (a - b).norm())
    for name, mask in (("train", ~test), ("test", test)):
        mr, ap = reference.closure_ranking(points, pairs[mask], pairs, distance)
        assert got[name]["mean_rank"] == pytest.approx(mr, rel=1e-12)
        assert got[name]["map"] == pytest.approx(ap, rel=1e-9)
        assert got[name]["pairs"] == int(mask.sum())


def test_ties_count_one_half_like_the_reference(compiled):
    parents = random_dag(40, 3)
    pairs = transitive_closure(parents)
    points = _points(40, 2, 0)
    points[5:20] = points[5]  # quantized points coincide
    got = closure_ranking(points, {"all": pairs}, pairs, manifold=PoincareBall(1.0))["all"]
    mr, ap = reference.closure_ranking(points, pairs, pairs, lambda a, b: geometry.dist(a, b, c=1.0))
    assert got["mean_rank"] == pytest.approx(mr) and got["map"] == pytest.approx(ap)


def test_perfect_embedding_scores_one():
    # one axis per node, weighted 2^depth, summed along the path from the root: every
    # ancestor of u is then nearer to u than any other node
    parents = tree_parents(branching=2, depth=3)
    n = len(parents)
    pairs = transitive_closure(parents)
    points = torch.zeros(n, n, dtype=torch.float64)
    depth = [0] * n
    for u in range(n):
        if parents[u]:
            depth[u] = depth[parents[u][0]] + 1
            points[u] = points[parents[u][0]]
        points[u, u] = 2.0 ** depth[u]
    got = closure_ranking(points, {"all": pairs}, pairs, manifold=Euclidean())["all"]
    assert got["mean_rank"] == 1.0 and got["map"] == 1.0


def test_scores_are_monotone_in_distance():
    x, y = _points(7, 4, 1), _points(30, 4, 2, scale=0.8)
    scores = PoincareBall(1.0).distance_keys(x, y, across_rows=False)
    d = geometry.dist(x.unsqueeze(1), y.unsqueeze(0), c=1.0)
    assert (scores.argsort(1) == d.argsort(1)).all()


def test_empty_set_gives_nan():
    pairs = transitive_closure(random_dag(10, 0))
    got = closure_ranking(_points(10, 2, 0), {"none": pairs[:0]}, pairs, manifold=Euclidean())["none"]
    assert np.isnan(got["mean_rank"]) and got["pairs"] == 0


def test_prefix_agreement():
    from hrqtok.metrics.hierarchy import prefix_agreement

    codes = np.array([[1, 2, 3], [1, 2, 4], [1, 5, 3], [0, 2, 3]])
    pairs = np.array([[0, 1], [0, 2], [0, 3], [1, 1]])
    assert prefix_agreement(codes, pairs) == [0.75, 0.5, 0.25]


def _dense_buckets(positive, negatives):
    """Every negative placed among its row's positives (the fallback path, written plainly)."""
    rows, buckets = positive.shape[0], positive.shape[1] + 1
    out = []
    for side in ("right", "left"):
        counts = torch.zeros(rows, buckets, dtype=torch.long)
        for r in range(rows):
            for value in negatives[r].tolist():
                counts[r, int(torch.searchsorted(positive[r], torch.tensor([value],
                                                 dtype=positive.dtype), side=side))] += 1
        out.append(counts)
    return out


@pytest.mark.parametrize("far", [0.0, 50.0])  # most negatives inside the farthest positive, or few
@pytest.mark.parametrize("seed", range(3))
def test_placing_only_the_negatives_inside_the_farthest_positive_loses_nothing(seed, far, compiled):
    """The compiled loop and both tensor paths of _buckets agree with placing every negative,
    on the valid positions (the columns past a row's last positive are padding, cut off by the
    caller), ties included."""
    from hrqtok.metrics.ranking import _buckets

    g = torch.Generator().manual_seed(seed)
    rows, width, n = 12, 5, 300
    counts = torch.randint(1, width + 1, (rows,), generator=g)
    positive = torch.full((rows, width), float("inf"), dtype=torch.float64)
    for r in range(rows):
        positive[r, :counts[r]] = torch.randint(0, 20, (int(counts[r]),), generator=g).double()
    positive = positive.sort(1).values
    negatives = torch.randint(0, 25, (rows, n), generator=g).double()  # integers: many ties
    negatives += far * (torch.rand(rows, n, generator=g) < 0.97)  # far: 97 % are beyond
    negatives[:, :3] = float("inf")  # masked nodes (the row itself, its ancestors)
    valid = ~positive.isinf()
    # the chunk has rows without pairs in this set: the positives' rows are a subset of it
    local = torch.randperm(rows + 6, generator=g)[:rows].sort().values
    chunk = torch.full((rows + 6, n), -1.0, dtype=torch.float64)  # -1: closer than anything
    chunk[local] = negatives
    got = _buckets(positive, valid, chunk, local)
    sparse = (negatives <= positive.masked_fill(~valid, -1).max(1, keepdim=True).values).sum()
    assert (sparse * width <= negatives.numel()) == (far > 0)  # which path ran
    for mine, reference_counts in zip(got, _dense_buckets(positive, negatives)):
        for r in range(rows):  # cumulated over the valid positions, as the ranks use them
            c = int(counts[r])
            assert torch.equal(mine[r, :c].cumsum(0), reference_counts[r, :c].cumsum(0))


@pytest.mark.parametrize("scale", [0.05, 0.5])  # most negatives inside the farthest ancestor, or few
def test_compiled_placement_gives_the_tensor_paths_figures_on_any_thread_count(monkeypatch, scale):
    parents = random_dag(300, 5)
    pairs = transitive_closure(parents)
    test = split_pairs(len(pairs), 0.2, 5)
    points = _points(300, 3, 5, scale=scale)

    def figures():
        return closure_ranking(points, {"train": pairs[~test], "test": pairs[test]}, pairs,
                               manifold=PoincareBall(1.0))

    monkeypatch.setattr(ranking, "COMPILED", False)
    expected = figures()
    monkeypatch.setattr(ranking, "COMPILED", True)
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            assert figures() == expected  # integer counts: the same floats exactly
    finally:
        torch.set_num_threads(threads)
