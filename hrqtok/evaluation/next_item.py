"""Next-item generative retrieval (TIGER; HRQ paper §4.2, Appendix B.2/C.2): an encoder-decoder
transformer reads the concatenated multitokens of a user's history and generates the next
item's multitoken by beam search restricted to multitokens of real items. Recall@5/10 and
NDCG@5/10 on the leave-one-out test items, with the weights that scored best on validation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pyarrow.compute as pc

from hrqtok.config import Seq2SeqConfig, to_dict
from hrqtok.errors import InputError
from hrqtok.evaluation.histories import (
    Examples,
    build_histories,
    item_rows,
    leave_one_out,
)
from hrqtok.evaluation.metrics import hit_positions, ndcg_at, recall_at
from hrqtok.evaluation.seq2seq import Seq2Seq, beam_search, train_seq2seq
from hrqtok.evaluation.systems import score_systems, table_sizes
from hrqtok.evaluation.vocabulary import PAD, PrefixTrie, Vocabulary
from hrqtok.sources.interactions import Interactions
from hrqtok.store.tables import read_table

ProgressFn = Callable[[str, int, int, dict], None]
CUTOFFS = (5, 10)
VALIDATION_METRIC = "recall@10"


def history_ids(examples: Examples, item_ids: np.ndarray) -> np.ndarray:
    """(n, H) item rows (-1 before the start) -> (n, H·L) vocabulary ids, PAD before the start:
    the history's multitokens one after another, the most recent last."""
    n, width = examples.histories.shape
    ids = item_ids[np.maximum(examples.histories, 0)]  # (n, H, L)
    ids[examples.histories < 0] = PAD
    return ids.reshape(n, width * item_ids.shape[1])


def retrieval_metrics(model: Seq2Seq, sources: np.ndarray, targets: np.ndarray,
                      trie: PrefixTrie, *, width: int) -> dict:
    beams = beam_search(model, sources, trie, width=width)
    positions = hit_positions(beams, targets)
    out = {}
    for k in CUTOFFS:
        if k <= width:
            out[f"recall@{k}"] = recall_at(positions, k)
            out[f"ndcg@{k}"] = ndcg_at(positions, k)
    return out


def next_item_scores(tokens: np.ndarray, splits: dict[str, Examples], config: Seq2SeqConfig, *,
                     validate_every: int = 1, progress: ProgressFn | None = None) -> dict:
    """tokens (items, L): each item's multitoken; splits from ``leave_one_out``. Trains on
    the train examples, keeps the weights with the best validation recall@10 and scores test."""
    start = time.perf_counter()
    vocabulary = Vocabulary.for_tokens(tokens)
    item_ids = vocabulary.ids(tokens)
    trie = PrefixTrie(item_ids, len(vocabulary))
    sources = {name: history_ids(examples, item_ids) for name, examples in splits.items()}
    targets = {name: item_ids[examples.targets] for name, examples in splits.items()}
    width = max(config.beam, max(CUTOFFS))

    def validate(model: Seq2Seq) -> float:
        return retrieval_metrics(model, sources["validation"], targets["validation"], trie,
                                 width=width)[VALIDATION_METRIC]

    training = train_seq2seq(sources["train"], targets["train"], len(vocabulary), config,
                             progress=progress, validate=validate, validate_every=validate_every)
    trained = time.perf_counter() - start
    scores = retrieval_metrics(training.model, sources["test"], targets["test"], trie, width=width)
    best = max((s for _, s in training.validation), default=float("nan"))  # none with 0 epochs
    return {**scores, f"validation_{VALIDATION_METRIC}": best,
            "best_epoch": training.best_epoch or 0, "train_seconds": trained,
            "seconds": time.perf_counter() - start}


def evaluate_next_item(tokens_path: str, interactions: Interactions, config: Seq2SeqConfig, *,
                       min_events: int, max_events: int, validate_every: int = 1,
                       systems: tuple[str, ...] = ("model",), runs: int = 1,
                       progress: ProgressFn | None = None) -> dict:
    """Next-item retrieval with a token table's multitokens ("model") and/or random ones of the
    same shape ("random"). Interactions naming items the table lacks are left out and
    counted; so are users with fewer than ``min_events`` interactions."""
    table = read_table(tokens_path)
    rows = item_rows(interactions.items, table.ids)
    unknown = rows < 0
    warnings = []
    if unknown.all():
        first = interactions.items[int(np.flatnonzero(unknown)[0])].as_py()
        raise InputError(f"no interaction names an item of {tokens_path} (first item: {first!r}); "
                         "are these the right tokens, and the right --item-field?",
                         source=interactions.source)
    unknown_items = pc.count_distinct(interactions.items.filter(unknown)).as_py()
    if unknown.any():
        where = int(np.flatnonzero(unknown)[0])
        warnings.append(f"{interactions.source}: {int(unknown.sum())} of {len(interactions)} "
                        f"interactions name items that are not in {tokens_path} ({unknown_items} "
                        f"distinct); they are left out (first on {interactions.location(where)}: "
                        f"{interactions.items[where].as_py()!r})")
    histories, stats = build_histories(interactions.users, rows, interactions.times,
                                       min_events=min_events, max_events=max_events)
    if not len(histories):
        raise InputError(f"no user has {min_events} or more interactions with known items "
                         f"(of {stats['users']} users); lower --min-events",
                         source=interactions.source)
    if stats["short_users"]:
        warnings.append(f"{interactions.source}: {stats['short_users']} of {stats['users']} users "
                        f"have fewer than {min_events} interactions; they are left out")
    splits = leave_one_out(histories)
    stats["unknown_items"] = unknown_items
    tokens = table.tokens
    results = score_systems(
        tokens, table_sizes(table),
        lambda t, seed: next_item_scores(t, splits, replace(config, seed=seed),
                                         validate_every=validate_every, progress=progress),
        systems=systems, seed=config.seed, runs=runs)
    return {"task": "next-item", "tokens": str(tokens_path), "interactions": interactions.source,
            "items": len(table), "levels": int(tokens.shape[1] - 1), "data": stats,
            "examples": {name: len(examples) for name, examples in splits.items()},
            "min_events": min_events, "max_events": max_events,
            "validation_metric": VALIDATION_METRIC, "settings": to_dict(config),
            "warnings": warnings, "results": results}
