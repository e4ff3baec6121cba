"""Hypernym generation (HRQ paper §4.1, Appendix C.1): a seq2seq transformer learns to map a
noun's multitoken to a hypernym's on the train closure pairs; recall@10 counts the held-out
pairs whose hypernym's full multitoken is among the 10 beams generated for the noun."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from hrqtok.config import Seq2SeqConfig, to_dict
from hrqtok.errors import ArtifactError
from hrqtok.evaluation.metrics import hit_positions, recall_at
from hrqtok.evaluation.seq2seq import beam_search, train_seq2seq
from hrqtok.evaluation.systems import score_systems
from hrqtok.evaluation.vocabulary import PrefixTrie, Vocabulary
from hrqtok.store.model_dir import load_model_dir
from hrqtok.store.tables import TokenTable

ProgressFn = Callable[[str, int, int, dict], None]


def hypernym_recall(tokens: np.ndarray, pairs: np.ndarray, test: np.ndarray, config: Seq2SeqConfig,
                    *, progress: ProgressFn | None = None) -> dict:
    """tokens (n, L): each node's multitoken; pairs (m, 2) closure rows (hyponym, hypernym);
    test (m,) bool marks the held-out pairs. Trains on the others, generates for the held-out
    hyponyms and scores every held-out pair."""
    start = time.perf_counter()
    vocabulary = Vocabulary.for_tokens(tokens)
    ids = vocabulary.ids(tokens)
    train, held_out = pairs[~test], pairs[test]
    model = train_seq2seq(ids[train[:, 0]], ids[train[:, 1]], len(vocabulary), config,
                          progress=progress).model
    trained = time.perf_counter() - start
    queries, row = np.unique(held_out[:, 0], return_inverse=True)
    beams = beam_search(model, ids[queries], PrefixTrie(ids, len(vocabulary)), width=config.beam,
                        progress=progress)
    positions = hit_positions(beams[row], ids[held_out[:, 1]])
    return {"recall@1": recall_at(positions, 1), f"recall@{config.beam}": recall_at(positions, config.beam),
            "test_pairs": int(len(held_out)), "hyponyms": int(len(queries)),
            "train_pairs": int(len(train)), "train_seconds": trained,
            "seconds": time.perf_counter() - start}


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
                       progress: ProgressFn | None = None) -> dict:
    """Recall of hypernym generation on a WordNet model's held-out pairs for each system:
    "model" (its token table) and "random" (random multitokens of the same shape), over
    ``runs`` seeds from config.seed."""
    loaded = load_model_dir(model_dir)
    hierarchy, test = loaded.hierarchy()
    tokens = node_tokens(hierarchy.names, loaded.table())
    sizes = [loaded.model_config.codebook_size] * loaded.model_config.levels
    results = score_systems(
        tokens, sizes, lambda t, seed: hypernym_recall(t, hierarchy.pairs, test,
                                                       replace(config, seed=seed), progress=progress),
        systems=systems, seed=config.seed, runs=runs)
    return {"task": "hypernyms", "model": str(model_dir),
            "geometry": loaded.model_config.geometry, "levels": loaded.model_config.levels,
            "codebook_size": loaded.model_config.codebook_size, "settings": to_dict(config),
            "results": results}
