"""What `inspect` and metrics.json say about a WordNet model: closure MR / MAP of the
continuous embedding and of its quantized reconstruction, on train and held-out pairs, and how
often a noun and its hypernym share a token prefix (against random pairs of nouns)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hrqtok.metrics.ranking import closure_ranking
from hrqtok.models.hierarchy import HierarchyModel
from hrqtok.sources.hierarchy import Hierarchy

RANDOM_PAIRS = 100_000  # random noun pairs for the chance level of prefix sharing


def prefix_agreement(codes: np.ndarray, pairs: np.ndarray) -> list[float]:
    """Share of ``pairs`` whose multitokens agree on the first 1, 2, …, k codes."""
    if len(pairs) == 0:
        return [float("nan")] * codes.shape[1]
    same = codes[pairs[:, 0]] == codes[pairs[:, 1]]
    return [float(np.logical_and.reduce(same[:, :j + 1], axis=1).mean())
            for j in range(codes.shape[1])]


def random_pairs(n: int, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, n, size=(count, 2))
    return pairs[pairs[:, 0] != pairs[:, 1]]


@torch.no_grad()
def hierarchy_report(model: HierarchyModel, hierarchy: Hierarchy, test: np.ndarray,
                     codes: np.ndarray, *, progress: Callable | None = None) -> dict:
    pairs = hierarchy.pairs
    evaluated = {"train": pairs[~test], "test": pairs[test]}
    points = model.embeddings.detach()
    quantized = model.decode_codes(torch.from_numpy(codes))
    ranking = {
        "continuous": closure_ranking(points, evaluated, pairs, manifold=model.manifold,
                                      progress=progress),
        "quantized": closure_ranking(quantized, evaluated, pairs, manifold=model.manifold,
                                     progress=progress),
    }
    direct = np.array([(u, p) for u, ps in enumerate(hierarchy.parents) for p in ps],
                      dtype=np.int64).reshape(-1, 2)
    return {
        "nodes": len(hierarchy), "pairs": int(len(pairs)), "train_pairs": int((~test).sum()),
        "test_pairs": int(test.sum()), "max_depth": int(hierarchy.depths.max(initial=0)),
        "ranking": ranking,
        "prefix_agreement": {
            "closure_pairs": prefix_agreement(codes, pairs),
            "parent_pairs": prefix_agreement(codes, direct),
            "random_pairs": prefix_agreement(codes, random_pairs(len(hierarchy), RANDOM_PAIRS)),
        },
        "quantization_distance": float(model.manifold.dist(points, quantized).mean()),
        "radius": _radius(model, points),
    }


def _radius(model: HierarchyModel, points: torch.Tensor) -> dict:
    """Distance of the nodes from the origin (hyperbolic on the ball): the CV of Table 4."""
    radius = model.manifold.dist0(points).numpy()
    mean, std = float(radius.mean()), float(radius.std())
    return {"mean": mean, "std": std, "cv": std / mean if mean else float("nan"),
            "max": float(radius.max(initial=0))}
