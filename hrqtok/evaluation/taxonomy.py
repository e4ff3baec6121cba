"""Taxonomy agreement ("hierarchy discovery" a user can check on a catalogue): do token prefixes
follow the items' category paths? Per token level j, the normalised mutual information and the
purity between the first j + 1 codes and the first j + 1 categories (items whose path is that
deep); over sampled item pairs, the Spearman correlation between the length of the shared
token prefix and the depth of the shared category path."""

from __future__ import annotations

import numpy as np

from hrqtok.errors import InputError
from hrqtok.evaluation.systems import score_systems, table_sizes
from hrqtok.sources.records import records, source_name
from hrqtok.store.tables import read_table

PATH_SEPARATOR = ">"  # "Beauty > Skin > Face"
SAMPLED_PAIRS = 100_000


def parse_path(value, *, source: str, line: int, field: str) -> tuple[str, ...]:
    """A category path from a list of names or a "A > B > C" string."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(PATH_SEPARATOR)]
    elif isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        parts = [p.strip() for p in value]
    else:
        found = "nothing" if value is None else type(value).__name__
        raise InputError(f"field '{field}' must be a list of category names or a string like "
                         f"'A > B > C', found {found}", source=source, line=line)
    if not parts or not all(parts):
        raise InputError(f"field '{field}' holds an empty category", source=source, line=line)
    return tuple(parts)


def read_labels(path: str, *, id_field: str, labels_field: str,
                fmt: str | None = None) -> tuple[list[str], list[tuple[str, ...]]]:
    """Ids and category paths of every record (an item without the field is an error)."""
    source = source_name(path)
    ids, paths, first = [], [], {}
    for line, record in records(path, fmt):
        item_id = record.get(id_field)
        if item_id is None or item_id == "":
            raise InputError(f"field '{id_field}' is missing; name the id field with --id-field",
                             source=source, line=line)
        item_id = str(item_id)
        if item_id in first:
            raise InputError(f"duplicate id {item_id!r} (first on line {first[item_id]})",
                             source=source, line=line)
        first[item_id] = line
        ids.append(item_id)
        paths.append(parse_path(record.get(labels_field), source=source, line=line,
                                field=labels_field))
    if not ids:
        raise InputError("no items found", source=source)
    return ids, paths


def _labels(rows: list) -> np.ndarray:
    """Dense integer labels of hashable rows."""
    index: dict = {}
    return np.array([index.setdefault(r, len(index)) for r in rows], dtype=np.int64)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalised_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """MI(a, b) / mean(H(a), H(b)) of two labelings (scikit-learn's default normalisation);
    1 when both put every item alone or together in the same way, 1 too when both are a
    single cluster."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.unique(a * (b.max() + 1) + b, return_counts=True)[1]
    h_a, h_b = _entropy(np.bincount(a)), _entropy(np.bincount(b))
    if h_a == 0 and h_b == 0:
        return 1.0
    mutual = h_a + h_b - _entropy(joint)
    return float(mutual / ((h_a + h_b) / 2))


def purity(clusters: np.ndarray, classes: np.ndarray) -> float:
    """Share of items in the majority class of their cluster."""
    _, clusters = np.unique(clusters, return_inverse=True)
    _, classes = np.unique(classes, return_inverse=True)
    pair, counts = np.unique(clusters * (classes.max() + 1) + classes, return_counts=True)
    best = np.zeros(clusters.max() + 1, dtype=np.int64)
    np.maximum.at(best, pair // (classes.max() + 1), counts)
    return float(best.sum() / len(clusters))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks[order] = np.repeat((starts + ends - 1) / 2 + 1, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation with average ranks for ties (NaN if one side is constant)."""
    rx, ry = _average_ranks(np.asarray(x)), _average_ranks(np.asarray(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / denominator) if denominator else float("nan")


def _shared_length(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Length of the common prefix of paired rows (m, L); -1 marks the end of a row."""
    same = np.logical_and.accumulate((a == b) & (a >= 0), axis=1)
    return same.sum(1)


def taxonomy_agreement(codes: np.ndarray, paths: list[tuple[str, ...]], *,
                       pairs: int = SAMPLED_PAIRS, seed: int = 0) -> dict:
    """codes (n, k) without the disambiguation token; paths: each item's category path."""
    levels = []
    for j in range(codes.shape[1]):
        deep = np.array([len(p) > j for p in paths])
        if deep.sum() == 0:
            break
        prefix = _labels([tuple(row) for row in codes[deep, :j + 1].tolist()])
        category = _labels([p[:j + 1] for p, d in zip(paths, deep) if d])
        levels.append({"level": j, "items": int(deep.sum()),
                       "categories": int(category.max() + 1), "prefixes": int(prefix.max() + 1),
                       "nmi": normalised_mutual_information(prefix, category),
                       "purity": purity(prefix, category)})
    depth = max(len(p) for p in paths)
    padded = np.full((len(paths), depth), -1, dtype=np.int64)
    for j in range(depth):  # category names as integers per depth; -1 past a path's end
        rows = [i for i, p in enumerate(paths) if len(p) > j]
        padded[rows, j] = _labels([paths[i][:j + 1] for i in rows])
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(paths), size=(2, pairs))
    keep = left != right
    left, right = left[keep], right[keep]
    shared_codes = _shared_length(codes[left], codes[right])
    shared_depth = _shared_length(padded[left], padded[right])
    return {"items": len(paths), "levels": levels, "pairs": int(keep.sum()),
            "rank_correlation": spearman(shared_codes, shared_depth)}


def agreement_row(report: dict) -> dict:
    """One run's figures as a flat row (level numbers count tokens: nmi_1 is the first)."""
    row = {"rank_correlation": report["rank_correlation"]}
    for level in report["levels"]:
        row[f"nmi_{level['level'] + 1}"] = level["nmi"]
        row[f"purity_{level['level'] + 1}"] = level["purity"]
    return row


def evaluate_taxonomy(tokens_path: str, items_path: str, *, id_field: str = "id",
                      labels_field: str = "path", fmt: str | None = None,
                      systems: tuple[str, ...] = ("model",), runs: int = 1, seed: int = 0,
                      pairs: int = SAMPLED_PAIRS) -> dict:
    """Agreement of a token table's multitokens ("model") or of random multitokens of the same
    shape ("random") with the category paths of the labelled items."""
    table = read_table(tokens_path)
    ids, paths = read_labels(items_path, id_field=id_field, labels_field=labels_field, fmt=fmt)
    row = {item_id: i for i, item_id in enumerate(table.ids)}
    missing = [item_id for item_id in ids if item_id not in row]
    if missing:
        raise InputError(f"{len(missing)} of {len(ids)} items have no multitoken in {tokens_path} "
                         f"(first: {missing[0]!r}); encode them with `hrqtok encode`",
                         source=source_name(items_path))
    tokens = table.tokens[[row[item_id] for item_id in ids]]
    results = score_systems(
        tokens, table_sizes(table), lambda t, seed: agreement_row(taxonomy_agreement(t[:, :-1], paths, pairs=pairs, seed=seed)),
        systems=systems, seed=seed, runs=runs)
    depths = np.array([len(p) for p in paths])
    return {"task": "taxonomy", "tokens": str(tokens_path), "items": len(ids),
            "levels": int(tokens.shape[1] - 1), "category_depth": {"max": int(depths.max()),
                                                               "mean": float(depths.mean())},
            "results": results}
