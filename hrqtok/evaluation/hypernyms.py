"""Hypernym generation (HRQ paper §4.1, Appendix C.1): a seq2seq transformer learns to map a
noun's multitoken to a hypernym's on the train closure pairs; recall@10 counts the held-out
pairs whose hypernym's full multitoken is among the 10 beams generated for the noun."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from hrqtok.config import Seq2SeqConfig, to_dict
from hrqtok.errors import ArtifactError
from hrqtok.evaluation.metrics import clustered_standard_error, hit_positions, recall_at
from hrqtok.evaluation.seq2seq import beam_search, train_seq2seq
from hrqtok.evaluation.systems import score_systems
from hrqtok.evaluation.vocabulary import PrefixTrie, Vocabulary
from hrqtok.store.model_dir import load_model_dir
from hrqtok.store.tables import TokenTable

ProgressFn = Callable[[str, int, int, dict], None]
# the pair samples' random stream, apart from the transformer's (both from config.seed)
PAIR_SAMPLE_STREAM = 1


def sample_rows(count: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``limit`` of ``count`` rows drawn without replacement, in order; all of
    them when limit is None or not below count."""
    if limit is None or limit >= count:
        return np.arange(count)
    return np.sort(rng.choice(count, size=limit, replace=False))


def hypernym_recall(tokens: np.ndarray, pairs: np.ndarray, test: np.ndarray, config: Seq2SeqConfig,
                    *, train_pairs: int | None = None, test_pairs: int | None = None,
                    progress: ProgressFn | None = None) -> dict:
    """tokens (n, L): each node's multitoken; pairs (m, 2) closure rows (hyponym, hypernym);
    test (m,) bool marks the held-out pairs. Trains on the others, generates for the held-out
    hyponyms and scores every held-out pair. ``train_pairs`` / ``test_pairs`` limit either side
    to a sample drawn with config.seed (the same pairs for every system at one seed).

    Besides recall@1 and recall@W (W = config.beam) it reports recall@W's standard error over
    the held-out pairs (clustered by noun: a noun's pairs share one set of beams), recall@W
    on the "rare" held-out pairs, whose hypernym is not one of the W hypernyms most frequent
    in the train pairs, and the "frequent" reference: recall@W of answering every noun with
    those W hypernyms, which any tokens let the transformer learn."""
    start = time.perf_counter()
    rng = np.random.default_rng([config.seed, PAIR_SAMPLE_STREAM])
    train, held_out = pairs[~test], pairs[test]
    train = train[sample_rows(len(train), train_pairs, rng)]
    held_out = held_out[sample_rows(len(held_out), test_pairs, rng)]
    vocabulary = Vocabulary.for_tokens(tokens)
    ids = vocabulary.ids(tokens)
    model = train_seq2seq(ids[train[:, 0]], ids[train[:, 1]], len(vocabulary), config,
                          progress=progress).model
    trained = time.perf_counter() - start
    queries, row = np.unique(held_out[:, 0], return_inverse=True)
    beams = beam_search(model, ids[queries], PrefixTrie(ids, len(vocabulary)), width=config.beam,
                        progress=progress)
    positions = hit_positions(beams[row], ids[held_out[:, 1]])
    width = config.beam
    hits = (positions >= 0) & (positions < width)
    frequent = np.isin(held_out[:, 1], most_frequent(train[:, 1], width))
    return {"recall@1": recall_at(positions, 1), f"recall@{width}": recall_at(positions, width),
            f"recall@{width}_se": clustered_standard_error(hits, held_out[:, 0]),
            f"rare_recall@{width}": float(hits[~frequent].mean()) if (~frequent).any() else math.nan,
            f"frequent_reference@{width}": float(frequent.mean()) if len(frequent) else math.nan,
            "test_pairs": int(len(held_out)), "rare_test_pairs": int((~frequent).sum()),
            "hyponyms": int(len(queries)), "train_pairs": int(len(train)),
            "train_seconds": trained, "seconds": time.perf_counter() - start}


def most_frequent(values: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` values that occur most often (ties: the smaller value first)."""
    unique, counts = np.unique(values, return_counts=True)
    return unique[np.lexsort((unique, -counts))[:count]]


def node_tokens(names: list[str], table: TokenTable) -> np.ndarray:
    """The table's multitoken of each node, in node order."""
    row = {item_id: i for i, item_id in enumerate(table.ids)}
    missing = [name for name in names if name not in row]
    if missing:
        raise ArtifactError(f"the token table has no multitoken for {len(missing)} nouns "
                            f"(first: {missing[0]}); re-run `hrqtok encode` on this model")
    return table.tokens[[row[name] for name in names]]


def evaluate_hypernyms(model_dir: str | Path, config: Seq2SeqConfig, *,
                       systems: tuple[str, ...] = ("model",), runs: int = 1,
                       train_pairs: int | None = None, test_pairs: int | None = None,
                       progress: ProgressFn | None = None) -> dict:
    """Recall of hypernym generation on a WordNet model's held-out pairs for each system:
    "model" (its token table) and "random" (random multitokens of the same shape), over
    ``runs`` seeds from config.seed; each seed draws its own pair samples when
    ``train_pairs`` / ``test_pairs`` limit them (see hypernym_recall)."""
    loaded = load_model_dir(model_dir)
    hierarchy, test = loaded.hierarchy()
    tokens = node_tokens(hierarchy.names, loaded.table())
    sizes = [loaded.model_config.codebook_size] * loaded.model_config.levels
    results = score_systems(
        tokens, sizes, lambda t, seed: hypernym_recall(t, hierarchy.pairs, test,
                                                       replace(config, seed=seed),
                                                       train_pairs=train_pairs,
                                                       test_pairs=test_pairs, progress=progress),
        systems=systems, seed=config.seed, runs=runs)
    return {"task": "hypernyms", "model": str(model_dir),
            "geometry": loaded.model_config.geometry, "levels": loaded.model_config.levels,
            "codebook_size": loaded.model_config.codebook_size,
            "settings": {**to_dict(config), "train_pairs": train_pairs, "test_pairs": test_pairs},
            "results": results}
