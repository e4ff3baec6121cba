"""Embedding throughput of the default model (packaged all-mpnet-base-v2) on 400 sample glosses,
at the default batch of 32, per backend and precision: torch float32 (the reference), torch
bfloat16, and OpenVINO float32 / bfloat16 / int8 (the `openvino` extra). Each is timed in
``--rounds`` rounds, interleaved, so that every ratio to torch float32 compares runs made
moments apart; the cosine to torch float32 is reported per backend (mean and least).

The OpenVINO exports go to a fresh temporary cache, so the one-time conversion (and for int8
the NNCF calibration) is timed too, as "first load".

Usage: python benchmarks/bench_embed.py [--rounds N] [--batch B]"""

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT

from hrqtok.paths import cache_dir
from hrqtok.sources.embedder import SentenceTransformerEmbedder

parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=2)
parser.add_argument("--batch", type=int, default=32)
args = parser.parse_args()

texts = [json.loads(line)["text"] for line in open(ROOT / "data" / "wordnet_glosses.jsonl")][:400]
models = cache_dir() / "models"
scratch = Path(tempfile.mkdtemp(prefix="bench-embed-"))
(scratch / "models").symlink_to(models)  # the assembled MPNet; exports start empty
os.environ["HRQTOK_CACHE"] = str(scratch)

backends = {"torch float32": lambda: SentenceTransformerEmbedder(batch_size=args.batch),
            "torch bfloat16": lambda: SentenceTransformerEmbedder(precision="bfloat16",
                                                                  batch_size=args.batch)}
try:
    from hrqtok.sources.openvino_embedder import OpenVINOEmbedder, _import_openvino

    _import_openvino()
    for precision in ("float32", "bfloat16", "int8"):
        backends[f"openvino {precision}"] = (
            lambda p=precision: OpenVINOEmbedder(precision=p, batch_size=args.batch))
except Exception as e:  # noqa: BLE001 - the extra is optional for this script
    print(f"openvino: not measured ({type(e).__name__}: {e})")

embedders = {}
for name, make in backends.items():
    start = time.perf_counter()
    embedders[name] = make()
    embedders[name].embed(texts[:8])  # load (and export) and warm up
    print(f"{name:16s} first load {time.perf_counter() - start:5.1f} s", flush=True)

rates = {name: [] for name in embedders}
vectors = {}
for round_ in range(args.rounds):
    for name, embedder in embedders.items():
        start = time.perf_counter()
        vectors[name] = embedder.embed(texts)
        rates[name].append(len(texts) / (time.perf_counter() - start))
    reference = rates["torch float32"][-1]
    print(f"round {round_ + 1}: " + ", ".join(
        f"{name} {rates[name][-1]:.1f} texts/s ({rates[name][-1] / reference:.2f}x)"
        for name in embedders), flush=True)

reference = vectors["torch float32"]
print(f"\n| backend (batch {args.batch}) | texts/s per round | × torch float32 per round "
      "| cosine to torch float32 (mean / least) |")
print("| --- | --- | --- | --- |")
for name in embedders:
    cos = (vectors[name] * reference).sum(1) / (np.linalg.norm(vectors[name], axis=1)
                                                 * np.linalg.norm(reference, axis=1))
    ratios = [r / f for r, f in zip(rates[name], rates["torch float32"])]
    print(f"| {name} | {' / '.join(f'{r:.1f}' for r in rates[name])} | "
          f"{' / '.join(f'{r:.2f}' for r in ratios)} | {cos.mean():.5f} / {cos.min():.5f} |")
shutil.rmtree(scratch)  # the exports: about 1 GB
