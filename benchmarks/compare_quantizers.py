"""Every quantizer on the same data: reconstruction, per-level utilisation and perplexity,
collision rate, fit time, encode speed and a downstream score, each the mean ± std over
``--seeds`` fits (each downstream run uses its fit's seed). Fits go through the CLI with equal
settings; encode speed is the model's encode call on vectors already embedded, best of 3.

  sample     data/wordnet_glosses.jsonl, fit defaults (3 × 256); downstream: `eval taxonomy`
  mammals    WordNet mammal subtree, k=3, s=32, latent 5 (hypervq has no WordNet mode);
             downstream: `eval hypernyms` recall@10
  movielens  MovieLens-100k titles/years/genres, fit defaults; downstream: `eval next-item`
             recall@10 (about 6 min per run: only with --downstream movielens)

Usage: python benchmarks/compare_quantizers.py [--datasets sample,mammals,movielens]
           [--quantizers hrq,rq,...] [--seeds 3] [--downstream sample,mammals]
           [--downstream-seeds N] [--workdir DIR] [--out FILE]

Fits and downstream scores already in the workdir are reused (same arguments).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, best_time

from hrqtok.config import QUANTIZERS
from hrqtok.pipeline import EmbedSettings, item_vectors
from hrqtok.sources.items import read_items
from hrqtok.store.model_dir import WORDNET, load_model_dir

SAMPLE = str(ROOT / "data" / "wordnet_glosses.jsonl")
MAMMALS = ["--wordnet", "--root", "mammal.n.01", "--latent-dim", "5", "--levels", "3",
           "--codebook-size", "32"]
NO_WORDNET = {"hypervq"}  # learns its code choice from a decoder; WordNet mode has none


def hrqtok(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "hrqtok", *args, "--quiet"], cwd=ROOT,
                            check=True, capture_output=True, text=True)
    return result.stdout


def fit_args(dataset: str, quantizer: str, workdir: Path) -> tuple[list[str], str | None]:
    """CLI arguments of one fit, and the items file (None for WordNet)."""
    if dataset == "mammals":
        return MAMMALS + (["--kmeans-iters", "100"] if "kmeans" in quantizer else []), None
    items = SAMPLE if dataset == "sample" else str(workdir / "ml-100k" / "items.jsonl")
    return (["--kmeans-iters", "100"] if "kmeans" in quantizer else []), items


def encode_speed(model_dir: Path, items: str | None) -> float:
    """Items per second of the model's encode (greedy), embeddings already at hand."""
    loaded = load_model_dir(model_dir)
    if loaded.kind == WORDNET:
        n = len(loaded.model.embeddings)
        return n / best_time(lambda: loaded.model.encode(), repeat=3)
    # both catalogues use the default fields (id, text) and embedder, cached by the fit
    vectors = torch.from_numpy(item_vectors(read_items(items), EmbedSettings()))
    return len(vectors) / best_time(lambda: loaded.model.encode(vectors), repeat=3)


def downstream(dataset: str, model: Path, tokens: Path, seed: int) -> float:
    common = ["--runs", "1", "--seed", str(seed), "--json"]
    if dataset == "sample":
        report = hrqtok("eval", "taxonomy", "--tokens", str(tokens), "--items", SAMPLE, *common)
        return json.loads(report)["results"]["model"]["rank_correlation"]["mean"]
    if dataset == "mammals":
        report = hrqtok("eval", "hypernyms", "--model", str(model), *common)
        return json.loads(report)["results"]["model"]["recall@10"]["mean"]
    report = hrqtok("eval", "next-item", "--tokens", str(tokens), "--movielens-100k", *common)
    return json.loads(report)["results"]["model"]["recall@10"]["mean"]


DOWNSTREAM = {"sample": "taxonomy rank corr.", "mammals": "hypernym recall@10",
              "movielens": "next-item recall@10"}


def run(dataset: str, quantizer: str, seed: int, workdir: Path, with_downstream: bool) -> dict:
    args, items = fit_args(dataset, quantizer, workdir)
    model = workdir / f"{dataset}-{quantizer}-{seed}"
    tokens = workdir / f"{dataset}-{quantizer}-{seed}.parquet"
    if not (model / "metrics.json").exists():
        hrqtok("fit", *([items] if items else []), *args, "--quantizer", quantizer, "--seed",
               str(seed), "--model", str(model), "--force")
    metrics = json.loads((model / "metrics.json").read_text())
    if not tokens.exists():
        hrqtok("encode", "--model", str(model), "--out", str(tokens))
    levels = metrics["table"]["levels"]
    row = {
        "utilisation": [lv["utilisation"] for lv in levels],
        "perplexity": [lv["perplexity"] for lv in levels],
        "collisions": metrics["table"]["collisions"]["collision_rate"],
        "fit_seconds": metrics["fit"]["seconds"],
        "encode_per_second": encode_speed(model, items),
    }
    if "vectors" in metrics:
        row["cosine"] = metrics["vectors"]["reconstruction"]["cosine"]
        row["mse"] = metrics["vectors"]["reconstruction"]["mse"]
    else:  # WordNet: how well the quantized points keep the closure ranking
        row["quantized_map"] = metrics["hierarchy"]["ranking"]["quantized"]["test"]["map"]
        row["latent_distance"] = metrics["hierarchy"]["quantization_distance"]
    if with_downstream:  # kept beside the model: a later run with more seeds reuses it
        saved = workdir / f"{dataset}-{quantizer}-{seed}.downstream.json"
        if not saved.exists():
            saved.write_text(json.dumps(downstream(dataset, model, tokens, seed)))
        row["downstream"] = json.loads(saved.read_text())
    return row


def spread(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(np.mean(values), fmt)} ± {format(np.std(values), fmt)}"


def table(dataset: str, results: dict[str, list[dict]]) -> str:
    first = next(iter(results.values()))[0]
    quality = [("cosine", "reconstruction cosine", ".4f"), ("mse", "MSE", ".2e")] if "cosine" in first \
        else [("quantized_map", "held-out MAP, quantized", ".3f"),
              ("latent_distance", "d(x, quantized)", ".3f")]
    columns = quality + [("collisions", "collisions", ".1%"), ("fit_seconds", "fit s", ".1f"),
                         ("encode_per_second", "encode items/s", ",.0f")]
    if "downstream" in first:
        columns.append(("downstream", DOWNSTREAM[dataset], ".3f"))
    head = ["quantizer"] + [title for _, title, _ in columns] + ["used per level", "perplexity per level"]
    lines = ["| " + " | ".join(head) + " |", "| --- " * len(head) + "|"]
    for quantizer, rows in results.items():
        cells = [spread([r[key] for r in rows if key in r], fmt) for key, _, fmt in columns]
        used = "/".join(f"{np.mean([r['utilisation'][i] for r in rows]):.0%}"
                        for i in range(len(rows[0]["utilisation"])))
        perplexity = "/".join(f"{np.mean([r['perplexity'][i] for r in rows]):.0f}"
                              for i in range(len(rows[0]["perplexity"])))
        lines.append("| " + " | ".join([quantizer, *cells, used, perplexity]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="sample,mammals,movielens")
    parser.add_argument("--quantizers", default=",".join(QUANTIZERS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--downstream", default="sample,mammals",
                        help="Datasets whose downstream task runs (movielens: ~6 min per fit).")
    parser.add_argument("--downstream-seeds", type=int, default=None,
                        help="Run the downstream task for the first N fits only [all].")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="Also write the tables here.")
    options = parser.parse_args()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="hrqtok-compare-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with_downstream = set(options.downstream.split(",")) if options.downstream else set()
    sections = []
    for dataset in options.datasets.split(","):
        if dataset == "movielens" and not (workdir / "ml-100k" / "items.jsonl").exists():
            hrqtok("export", "movielens-100k", "--out", str(workdir / "ml-100k"))
        start, results = time.perf_counter(), {}
        for quantizer in options.quantizers.split(","):
            if dataset == "mammals" and quantizer in NO_WORDNET:
                continue
            limit = options.seeds if options.downstream_seeds is None else options.downstream_seeds
            results[quantizer] = [run(dataset, quantizer, seed, workdir,
                                      dataset in with_downstream and seed < limit)
                                  for seed in range(options.seeds)]
            print(f"{dataset} {quantizer}: {results[quantizer]}", file=sys.stderr, flush=True)
        sections.append(f"**{dataset}** ({options.seeds} seeds; "
                        f"{(time.perf_counter() - start) / 60:.1f} min)\n\n{table(dataset, results)}\n")
        print(sections[-1], flush=True)
    if options.out:
        options.out.write_text("\n".join(sections))


if __name__ == "__main__":
    main()
