"""The closure MR / MAP of a WordNet model over all its pairs (what `fit --wordnet` reports at
the end, and `inspect`): the compiled placement of negatives against the tensor path, on the
continuous points and the decoded multitokens of each model directory given, or on an
untrained start of all nouns (every hypernym ranked thousands deep: the tensor path's worst
case). The pairs of a seeded sample of --hyponyms nouns are ranked (0: every noun, as the
fit's report does; the cost is linear in them). Each figure is timed once per path, the two
paths one after the other, and their results must be equal.

Usage: python benchmarks/bench_ranking.py [--hyponyms 10000] [MODEL_DIR ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import ROOT  # noqa: F401  (puts the repository on sys.path)

from hrqtok.geometry import PoincareBall
from hrqtok.metrics import ranking
from hrqtok.metrics.ranking import closure_ranking
from hrqtok.models.hierarchy import HierarchyModel, hierarchy_model_config
from hrqtok.sources.hierarchy import split_pairs
from hrqtok.sources.wordnet import load_nouns
from hrqtok.store.model_dir import load_model_dir


def cases(paths: list[str]):
    """(label, points, manifold, pairs, test) to rank."""
    if not paths:
        nouns = load_nouns()
        config = hierarchy_model_config(latent_dim=10, levels=3, codebook_size=256,
                                        quantizer="hrq", curvature=1.0, commitment=0.25)
        model = HierarchyModel(config, len(nouns))
        model.reset(torch.Generator().manual_seed(0))
        yield ("all nouns, untrained start, 10-d", model.embeddings.detach(), model.manifold,
               nouns.pairs, split_pairs(len(nouns.pairs), 0.15, seed=0))
    for path in paths:
        loaded = load_model_dir(path)
        hierarchy, test = loaded.hierarchy()
        codes = torch.from_numpy(loaded.table().codes)
        model = loaded.model
        for label, points in (("continuous", model.embeddings.detach()),
                              ("quantized", model.decode_codes(codes))):
            yield f"{path} {label}", points, model.manifold, hierarchy.pairs, test


def warm_up() -> None:
    """Compile the numba loop (on a first run; cached on disk after) outside the timings."""
    pairs = np.array([[1, 0], [2, 0], [2, 1]])
    ranking.COMPILED = True
    closure_ranking(torch.rand(3, 2, dtype=torch.float64) * 0.5, {"all": pairs}, pairs,
                    manifold=PoincareBall(1.0))


def sampled(pairs: np.ndarray, hyponyms: int) -> np.ndarray:
    """The rows of pairs whose hyponym is one of a seeded sample of ``hyponyms`` nouns."""
    nouns = np.unique(pairs[:, 0])
    if not hyponyms or hyponyms >= len(nouns):
        return np.ones(len(pairs), dtype=bool)
    chosen = np.random.default_rng(0).choice(nouns, size=hyponyms, replace=False)
    return np.isin(pairs[:, 0], chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hyponyms", type=int, default=10_000)
    parser.add_argument("models", nargs="*")
    args = parser.parse_args()
    warm_up()
    print(f"torch threads: {torch.get_num_threads()}; pairs of {args.hyponyms or 'all'} "
          f"hyponyms\n")
    print("| points | train MR / MAP | tensor path s | compiled s | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for label, points, manifold, pairs, test in cases(args.models):
        chosen = sampled(pairs, args.hyponyms)
        evaluated = {"train": pairs[chosen & ~test], "test": pairs[chosen & test]}
        seconds = {}
        for compiled in (False, True):
            ranking.COMPILED = compiled
            start = time.perf_counter()
            seconds[compiled] = (closure_ranking(points, evaluated, pairs, manifold=manifold),
                                 time.perf_counter() - start)
        (tensor, slow), (ours, fast) = seconds[False], seconds[True]
        assert ours == tensor, (ours, tensor)
        print(f"| {label} | {ours['train']['mean_rank']:.1f} / {ours['train']['map']:.3f} | "
              f"{slow:.2f} | {fast:.2f} | {slow / fast:.1f}× |")


if __name__ == "__main__":
    main()
