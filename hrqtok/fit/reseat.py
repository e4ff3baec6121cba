"""Re-seating stuck nodes of a WordNet embedding (a step of the release).

A few nodes end training far from a hypernym they should sit beside, behind nodes the ranking
loss keeps them from passing: on mammals (5-d) hooded_seal.n.01 ranked its hypernym
earless_seal.n.01 169th among its negatives after a default fit, and without the (H)RQ term
147th after 230 epochs and still 146th after 1,000.
More epochs do not move them; such a local minimum is left by moving the node. A node one of
whose train hypernyms ranks worse than a limit is put next to its most specific train
hypernym (the one with the most train hypernyms of its own), a little further from the
origin, and training goes on from there (README, WordNet mode: the release).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hrqtok.geometry import Manifold
from hrqtok.metrics.ranking import worst_ranks

OUTWARD = 0.02  # a re-seated node starts at its hypernym's point scaled by 1 + this,
NOISE = 1e-3  # plus this much Gaussian noise, so that siblings re-seated together differ


def most_specific_hypernyms(train_pairs: np.ndarray, n_nodes: int) -> np.ndarray:
    """For each node, its train hypernym with the most train hypernyms of its own (-1 for a
    node without any); ties go to the lower node id."""
    depth = np.bincount(train_pairs[:, 0], minlength=n_nodes)
    order = np.lexsort((train_pairs[:, 1], -depth[train_pairs[:, 1]], train_pairs[:, 0]))
    ordered = train_pairs[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:, 0] != ordered[:-1, 0]
    choice = np.full(n_nodes, -1, dtype=np.int64)
    choice[ordered[first, 0]] = ordered[first, 1]
    return choice


@torch.no_grad()
def reseat_stuck_nodes(embeddings: Tensor, train_pairs: np.ndarray, known: np.ndarray, *,
                       manifold: Manifold, max_rank: float,
                       generator: torch.Generator) -> np.ndarray:
    """Move, in place, every node with a train hypernym ranked worse than ``max_rank`` among
    its ground-truth negatives (``known``: all closure pairs) next to its most specific train
    hypernym. Returns the nodes moved (sorted)."""
    hyponyms, worst = worst_ranks(embeddings, train_pairs, known, manifold=manifold)
    stuck = hyponyms[worst > max_rank]
    if len(stuck):
        anchors = torch.from_numpy(most_specific_hypernyms(train_pairs, len(embeddings))[stuck])
        noise = torch.randn((len(stuck), embeddings.shape[1]), generator=generator,
                            dtype=torch.float64).to(embeddings.dtype)
        seats = embeddings[anchors] * (1 + OUTWARD) + NOISE * noise
        embeddings[torch.from_numpy(stuck)] = manifold.project(seats)
    return stuck
