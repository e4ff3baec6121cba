"""A whole fit, from vectors (items) or a hierarchy (WordNet) to everything a model directory
holds: the trained model, its config record, the training log, the metrics and the fitted
items' token table. ``store.model_dir.save_model_dir`` writes one; ``hrqtok.Tokenizer`` holds one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hrqtok.config import HierarchyTrainConfig, ModelConfig, TrainConfig, to_dict
from hrqtok.devices import CPU
from hrqtok.fit.hierarchy import fit_hierarchy
from hrqtok.fit.items import ProgressFn, fit_model
from hrqtok.metrics.hierarchy import hierarchy_report
from hrqtok.metrics.quality import quality_report
from hrqtok.metrics.reports import table_report, vector_report
from hrqtok.sources.hierarchy import Hierarchy, split_pairs
from hrqtok.store.hierarchy import write_nodes, write_pairs
from hrqtok.store.model_dir import NODES, PAIRS, WORDNET
from hrqtok.store.tables import TokenTable, build_table


@dataclass
class Fitted:
    model: torch.nn.Module  # ItemModel or HierarchyModel, with its best weights, in eval mode
    config: dict  # config.json's body: "model", "train", "fit" (+ "kind", "hierarchy")
    log: list[dict]  # train_log.jsonl rows
    metrics: dict  # metrics.json
    table: TokenTable  # the fitted items' multitokens (metadata added when saved)
    extra: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # more files to write


def fit_item_vectors(vectors: np.ndarray, ids: list[str], model_config: ModelConfig,
                     train_config: TrainConfig, *, inputs: dict | None = None,
                     device: torch.device = CPU, progress: ProgressFn | None = None) -> Fitted:
    """Train (or k-means-fit) an item model on ``vectors`` (n, input_dim) float32, the items
    ``ids``, and measure it. ``inputs``: how the vectors were read and embedded, recorded in
    the config ("input", "embedder"). Ctrl-C stops training cleanly with the best weights so
    far. Training runs on ``device``; the model comes back on the CPU, which encodes the
    fitted items (as `hrqtok encode --device cpu` would)."""
    x = torch.from_numpy(vectors)
    start = time.perf_counter()
    result = fit_model(x, model_config, train_config, device=device, progress=progress)
    seconds = time.perf_counter() - start
    codes = result.model.encode(x).numpy()
    epochs = sum(row["phase"] in ("warm-up", "train") for row in result.log)
    summary = {
        "quantizer": model_config.quantizer, "items": len(ids),
        "train_items": len(result.train_index),
        "validation_items": len(result.validation_index), "epochs": epochs,
        "best_epoch": result.best_epoch, "stopped": result.stopped, "seconds": seconds,
        "items_per_second": len(result.train_index) * max(epochs, 1) / max(seconds, 1e-9),
    }
    if result.refit is not None:
        summary["refit_deep_codes"] = result.refit
    if not model_config.trained:
        summary["kmeans_iterations"] = [row["iterations"] for row in result.log]
    table = build_table(ids, codes, {})
    report = table_report(table, model_config.codebook_size)
    metrics = {"fit": summary, "vectors": vector_report(result.model, vectors), "table": report,
               "quality": quality_report(report)}
    config = {"model": to_dict(model_config), "train": to_dict(train_config), **(inputs or {}),
              "fit": summary}
    return Fitted(result.model, config, result.log, metrics, table)


def fit_wordnet_nouns(hierarchy: Hierarchy, model_config: ModelConfig,
                      train_config: HierarchyTrainConfig, *, root: str | None = None,
                      progress: ProgressFn | None = None) -> Fitted:
    """Node embeddings and (H)RQ codebooks trained together on the closure of ``hierarchy``
    (the WordNet nouns under ``root``, all when None), with a seeded train/test split."""
    test = split_pairs(len(hierarchy.pairs), train_config.test_fraction, train_config.seed)
    result = fit_hierarchy(hierarchy.pairs, test, len(hierarchy), model_config, train_config,
                           progress=progress)
    codes = result.codes.numpy()
    summary = {
        "nodes": len(hierarchy), "pairs": int(len(hierarchy.pairs)),
        "train_pairs": int((~test).sum()), "epochs": sum("epoch" in row for row in result.log),
        "quantizer": model_config.quantizer, "stopped": result.stopped,
        "seconds": result.seconds, "pairs_per_second": result.pairs_per_second,
    }
    config = {
        "kind": WORDNET, "model": to_dict(model_config), "train": to_dict(train_config),
        "hierarchy": {"source": "wordnet-3.0-nouns", "root": root, "nodes": len(hierarchy),
                      "pairs": int(len(hierarchy.pairs))},
        "fit": summary,
    }
    table = build_table(hierarchy.names, codes, {})
    metrics = {
        "fit": summary,
        "hierarchy": hierarchy_report(result.model, hierarchy, test, codes, progress=progress),
        "table": table_report(table, model_config.codebook_size),
    }
    metrics["quality"] = quality_report(metrics["table"])
    extra = {NODES: lambda path: write_nodes(hierarchy, path),
             PAIRS: lambda path: write_pairs(hierarchy, test, path)}
    return Fitted(result.model, config, result.log, metrics, table, extra)
