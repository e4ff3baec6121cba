"""A hierarchy of named nodes (WordNet nouns) and the transitive closure of its is-a links.

Nodes are rows 0..n-1. ``pairs`` is the closure as an (m, 2) int64 array of (hyponym,
hypernym) rows: every node with each of its ancestors. The seeded train/test split of the
pairs and the node table are stored in the model directory (``store.hierarchy``), so that
evaluations score exactly the held-out pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Hierarchy:
    names: list[str]  # node ids, e.g. synset names
    parents: list[list[int]]  # direct is-a links (rows)
    glosses: list[str]
    lexnames: list[str]
    depths: np.ndarray  # (n,) shortest is-a path to a node without parents
    pairs: np.ndarray  # (m, 2) int64 closure pairs (hyponym, hypernym), sorted

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_parents(cls, *, names: list[str], parents: list[list[int]], glosses: list[str],
                     lexnames: list[str]) -> Hierarchy:
        order = topological_order(parents)
        return cls(names, parents, glosses, lexnames, shortest_depths(parents, order),
                   transitive_closure(parents, order))


def topological_order(parents: list[list[int]]) -> list[int]:
    """Rows ordered so that every node comes after all its parents; a cycle is an error."""
    children: list[list[int]] = [[] for _ in parents]
    waiting = [len(set(p)) for p in parents]
    for child, ps in enumerate(parents):
        for p in set(ps):
            children[p].append(child)
    order = [u for u, w in enumerate(waiting) if w == 0]
    for u in order:  # grows while iterating: Kahn's algorithm
        for child in children[u]:
            waiting[child] -= 1
            if waiting[child] == 0:
                order.append(child)
    if len(order) != len(parents):
        raise ValueError("the is-a links contain a cycle")
    return order


def transitive_closure(parents: list[list[int]], order: list[int] | None = None) -> np.ndarray:
    """(m, 2) int64 pairs (node, ancestor) over all ancestors, sorted by node then ancestor."""
    order = topological_order(parents) if order is None else order
    ancestors: list[frozenset[int]] = [frozenset()] * len(parents)
    for u in order:  # parents first, so their ancestor sets are complete
        found: set[int] = set()
        for p in parents[u]:
            found.add(p)
            found |= ancestors[p]
        ancestors[u] = frozenset(found)
    counts = np.fromiter((len(a) for a in ancestors), dtype=np.int64, count=len(parents))
    hyponyms = np.repeat(np.arange(len(parents), dtype=np.int64), counts)
    hypernyms = np.fromiter((v for a in ancestors for v in sorted(a)), dtype=np.int64,
                            count=int(counts.sum()))
    return np.stack([hyponyms, hypernyms], axis=1)


def shortest_depths(parents: list[list[int]], order: list[int] | None = None) -> np.ndarray:
    """Shortest is-a path length from each node up to a node without parents."""
    order = topological_order(parents) if order is None else order
    depth = np.zeros(len(parents), dtype=np.int64)
    for u in order:
        if parents[u]:
            depth[u] = 1 + min(depth[p] for p in parents[u])
    return depth


def split_pairs(n_pairs: int, test_fraction: float, seed: int) -> np.ndarray:
    """Seeded random split: a bool mask, True for the held-out (test) pairs."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(n_pairs * test_fraction))
    order = np.random.default_rng(seed).permutation(n_pairs)
    test = np.zeros(n_pairs, dtype=bool)
    test[order[:n_test]] = True
    return test


COMPILED = True  # negative_hits on the CPU runs pair_kernels' loop (tests turn it off)


class PairSet:
    """A set of (u, v) pairs of nodes 0 … n-1 for vectorised membership tests: the sorted
    int64 keys u·n + v, searched with one searchsorted, behind a filter of one byte per slot
    (slot (u·MIX + v) mod 2^bits) that answers most misses with one gather. A sampled
    negative is almost never a pair: on all WordNet nouns about 4 % of the queries pass the
    filter, and a batch's test takes half the time of searching every query."""

    MIX = 40_503  # odd, so u -> u·MIX mod 2^bits is a bijection that spreads neighbours apart

    def __init__(self, pairs: np.ndarray, n: int):
        self.n = n
        self.keys = torch.from_numpy(np.sort(pairs[:, 0].astype(np.int64) * n + pairs[:, 1]))
        self.starts: np.ndarray | None = None  # built by the first compiled negative_hits
        # about 26 slots per pair (4 % false passes), at most 16 MB
        bits = min(max(int(len(pairs) * 26).bit_length(), 4), 24)
        self.mask = (1 << bits) - 1
        self.filter = torch.zeros(1 << bits, dtype=torch.bool)
        self.filter[self._slot(torch.from_numpy(pairs[:, 0].astype(np.int64)),
                               torch.from_numpy(pairs[:, 1].astype(np.int64)))] = True

    def _slot(self, u: Tensor, v: Tensor) -> Tensor:
        return (u * self.MIX + v) & self.mask

    def contains(self, u: Tensor, v: Tensor) -> Tensor:
        """Whether each (u, v) (int64 node ids, broadcast together) is in the set."""
        found = self.filter[self._slot(u, v)]  # the product is taken before broadcasting
        where = found.nonzero(as_tuple=True)
        if len(where[0]):
            u, v = u.expand(found.shape), v.expand(found.shape)
            queries = u[where] * self.n + v[where]
            at = torch.searchsorted(self.keys, queries).clamp_max(len(self.keys) - 1)
            found[where] = self.keys[at] == queries
        return found

    def negative_hits(self, anchors: Tensor, negatives: Tensor) -> Tensor:
        """anchors (g, G), negatives (g, K) int64 -> (g, G, K) bool: whether negative k of
        group g is anchor i's own node or one of its pairs' other ends (a sampled negative
        that must leave the softmax)."""
        if COMPILED and anchors.device.type == "cpu":
            from hrqtok.sources import pair_kernels  # numba: imported where a WordNet fit steps

            if self.starts is None:  # where each u's run of keys begins (n + 1,)
                self.starts = np.searchsorted(self.keys.numpy(), np.arange(self.n + 1) * self.n)
            out = torch.empty(anchors.shape + negatives.shape[1:], dtype=torch.bool)
            pair_kernels.negative_hits(
                anchors.to(torch.int64).contiguous().numpy(),
                negatives.to(torch.int64).contiguous().numpy(), self.keys.numpy(), self.starts,
                self.n, out.numpy())
            return out
        u, v = anchors.unsqueeze(2), negatives.unsqueeze(1)  # (g, G, K) when broadcast
        return self.contains(u, v) | (v == u)
