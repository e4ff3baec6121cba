"""Closure, depths, split and storage of a hierarchy, against brute force on small DAGs."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hrqtok.sources.hierarchy import (
    Hierarchy,
    PairSet,
    split_pairs,
    topological_order,
    transitive_closure,
)
from hrqtok.store.hierarchy import read_hierarchy, write_nodes, write_pairs
from tests.conftest import tree_parents


def random_dag(n, seed):
    rng = np.random.default_rng(seed)
    return [[]] + [sorted(set(rng.integers(0, i, size=rng.integers(1, 4)).tolist()))
                   for i in range(1, n)]


def brute_closure(parents):
    """Ancestors by repeated relaxation until nothing changes."""
    anc = [set(p) for p in parents]
    changed = True
    while changed:
        changed = False
        for u in range(len(parents)):
            extra = set().union(*(anc[p] for p in anc[u])) - anc[u] if anc[u] else set()
            if extra:
                anc[u] |= extra
                changed = True
    return sorted((u, v) for u in range(len(parents)) for v in anc[u])


@pytest.mark.parametrize("seed", range(10))
def test_closure_matches_brute_force(seed):
    parents = random_dag(40, seed)
    # shuffle row order so that parents do not always come first
    perm = np.random.default_rng(seed).permutation(40)
    inv = np.argsort(perm)
    shuffled = [[int(inv[p]) for p in parents[perm[i]]] for i in range(40)]
    pairs = transitive_closure(shuffled)
    assert [tuple(p) for p in pairs.tolist()] == brute_closure(shuffled)


def test_tree_closure_counts_and_depths():
    parents = tree_parents(branching=3, depth=3)  # 1 + 3 + 9 + 27 nodes
    h = Hierarchy.from_parents(names=[f"n{i}" for i in range(len(parents))], parents=parents,
                               glosses=[""] * len(parents), lexnames=[""] * len(parents))
    assert len(h) == 40
    assert len(h.pairs) == 3 * 1 + 9 * 2 + 27 * 3
    assert h.depths.tolist() == [0] + [1] * 3 + [2] * 9 + [3] * 27


def test_diamond_depth_is_shortest_path():
    # 0 -> 1 -> 2 -> 3 and 0 -> 3 directly
    parents = [[], [0], [1], [2, 0]]
    h = Hierarchy.from_parents(names=list("abcd"), parents=parents, glosses=[""] * 4,
                               lexnames=[""] * 4)
    assert h.depths.tolist() == [0, 1, 2, 1]
    assert sorted(map(tuple, h.pairs.tolist())) == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]


def test_cycle_is_an_error():
    with pytest.raises(ValueError, match="cycle"):
        topological_order([[1], [0]])


def test_split_is_seeded_and_sized():
    a, b = split_pairs(1000, 0.15, seed=3), split_pairs(1000, 0.15, seed=3)
    assert (a == b).all() and a.sum() == 150
    assert not (a == split_pairs(1000, 0.15, seed=4)).all()
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            split_pairs(10, bad, seed=0)


@given(st.integers(1, 60), st.integers(0, 300), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_pair_set_agrees_with_python_sets(n, count, seed):
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, n, size=(count, 2))
    queries = rng.integers(0, n, size=(2, 30, 7))
    truth = {(int(u), int(v)) for u, v in pairs}
    expected = np.vectorize(lambda u, v: (int(u), int(v)) in truth)(*queries)
    pair_set = PairSet(pairs, n)
    found = pair_set.contains(torch.from_numpy(queries[0]), torch.from_numpy(queries[1]))
    assert (found.numpy() == expected).all()
    if count:  # every pair is found (the filter never rejects one)
        assert pair_set.contains(torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1])).all()


@given(st.integers(1, 60), st.integers(0, 300), st.integers(1, 5), st.integers(1, 9),
       st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_negative_hits_agree_with_python_sets_on_both_paths(n, count, groups, size, seed):
    """A sampled negative leaves an anchor's softmax when it is the anchor or one of its
    pairs' other ends: pair_kernels' loop and the tensor operations, against Python sets."""
    from hrqtok.sources import hierarchy

    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, n, size=(count, 2))
    anchors = rng.integers(0, n, size=(groups, size))
    negatives = rng.integers(0, n, size=(groups, 7))
    truth = {(int(u), int(v)) for u, v in pairs}
    expected = np.array([[[(int(u), int(v)) in truth or u == v for v in negatives[g]]
                          for u in anchors[g]] for g in range(groups)])
    pair_set = PairSet(pairs, n)
    for compiled in (True, False):
        hierarchy.COMPILED = compiled
        try:
            found = pair_set.negative_hits(torch.from_numpy(anchors), torch.from_numpy(negatives))
        finally:
            hierarchy.COMPILED = True
        assert found.shape == expected.shape and (found.numpy() == expected).all()


def test_pair_set_filter_passes_few_misses_and_broadcasts():
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 5000, size=(20000, 2))
    pair_set = PairSet(pairs, 5000)
    u, v = torch.from_numpy(rng.integers(0, 5000, size=(40, 1))), torch.from_numpy(rng.integers(0, 5000, size=(1, 500)))
    passed = pair_set.filter[pair_set._slot(u, v)].float().mean()
    assert passed < 0.1  # the filter does its job: most misses stop at one gather
    assert pair_set.contains(u, v).shape == (40, 500)


def test_storage_round_trip(tmp_path):
    parents = random_dag(30, 1)
    h = Hierarchy.from_parents(names=[f"s{i}.n.01" for i in range(30)], parents=parents,
                               glosses=[f"gloss {i}" for i in range(30)],
                               lexnames=["noun.Tops"] * 30)
    test = split_pairs(len(h.pairs), 0.2, seed=0)
    write_nodes(h, tmp_path / "nodes.parquet")
    write_pairs(h, test, tmp_path / "pairs.parquet")
    table = pq.read_table(tmp_path / "pairs.parquet")
    assert table.column_names == ["hyponym", "hypernym", "split"]
    assert table.num_rows == len(h.pairs)
    back, back_test = read_hierarchy(tmp_path / "nodes.parquet", tmp_path / "pairs.parquet")
    assert back.names == h.names and back.parents == h.parents and back.glosses == h.glosses
    assert (back.pairs == h.pairs).all() and (back_test == test).all()
    assert (back.depths == h.depths).all()


def test_every_pair_is_an_ancestor_path():
    parents = random_dag(25, 7)
    pairs = transitive_closure(parents)
    reachable = set()
    for u in range(25):
        stack = list(parents[u])
        while stack:
            p = stack.pop()
            if (u, p) not in reachable:
                reachable.add((u, p))
                stack.extend(parents[p])
    assert set(map(tuple, pairs.tolist())) == reachable
    assert len(reachable) == len(pairs)  # no pair twice
