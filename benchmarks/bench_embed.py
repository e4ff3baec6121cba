"""Embedding throughput of the default model (packaged all-mpnet-base-v2) on the sample texts,
float32 vs bfloat16 at the default batch of 32, with the cosine between the two (bf16 is used
only if it matches); then both precisions at batches of 64 and 128, so that a larger batch is
compared with a larger batch."""

import json
import time

import numpy as np
from _common import ROOT

from hrqtok.sources.embedder import SentenceTransformerEmbedder

texts = [json.loads(line)["text"] for line in open(ROOT / "data" / "wordnet_glosses.jsonl")][:400]
results = {}
for precision in ("float32", "bfloat16"):
    embedder = SentenceTransformerEmbedder(precision=precision)
    embedder.embed(texts[:8])  # load and warm up
    start = time.perf_counter()
    results[precision] = embedder.embed(texts)
    seconds = time.perf_counter() - start
    print(f"{precision:8s}: {len(texts) / seconds:6.1f} texts/s ({len(texts)} sample glosses)")
a, b = results["float32"], results["bfloat16"]
cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
print(f"cosine bf16 vs fp32: mean {cos.mean():.5f}, min {cos.min():.5f}")
for batch in (64, 128):
    for precision in ("float32", "bfloat16"):
        embedder = SentenceTransformerEmbedder(precision=precision, batch_size=batch)
        embedder.embed(texts[:8])
        start = time.perf_counter()
        embedder.embed(texts)
        seconds = time.perf_counter() - start
        print(f"{precision} at batch {batch}: {len(texts) / seconds:6.1f} texts/s")
