"""The prepared CUDA check: every `--device` path run once on a GPU and compared with the CPU.
It has not been run yet (no GPU has been available to this project); the README says so.

1. fit: an HRQ-VAE and an rq-kmeans tokenizer fitted on 4,000 × 768 vectors on each device
   (same seed): seconds per epoch, collision rate and reconstruction error of each.
2. encode: the CPU-fitted tokenizer's codes made on the GPU against the CPU's (share equal),
   through the library and through the streamed catalogue encode (`hrqtok encode ITEMS`).
3. embed: 256 texts with the packaged MPNet on each device: texts/s, cosine to the CPU's.
4. eval: the seq2seq trained and beam-searched on the GPU (random multitokens), its loss
   against the CPU's.
Prints one line per figure and exits 1 when a check fails.

Usage: python benchmarks/check_cuda.py (a torch build with CUDA and a visible GPU)"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hrqtok import Tokenizer
from hrqtok.catalogue import encode_catalogue
from hrqtok.config import Seq2SeqConfig
from hrqtok.evaluation.seq2seq import beam_search, train_seq2seq
from hrqtok.evaluation.vocabulary import PrefixTrie
from hrqtok.pipeline import EmbedSettings, make_embedder

if not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch: run this on a GPU machine")
failures = []


def check(name: str, ok: bool, figure: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {figure}")
    if not ok:
        failures.append(name)


torch.manual_seed(0)
centers = torch.randn(64, 768)
x = torch.nn.functional.normalize(centers[torch.randint(64, (4000,))] + 0.7 * torch.randn(4000, 768),
                                  dim=-1).numpy()
ids = [f"item{i:05d}" for i in range(len(x))]
fits = {}
for quantizer in ("hrq", "rq-kmeans"):
    options = dict(quantizer=quantizer, seed=0) | (
        dict(epochs=10, warmup_epochs=2, patience=100) if quantizer == "hrq" else {})
    for device in ("cpu", "cuda"):
        start = time.perf_counter()
        tok = Tokenizer.fit(x, ids=ids, device=device, **options)
        seconds = time.perf_counter() - start
        fits[quantizer, device] = tok
        table = tok.encode()
        distinct = len({tuple(row) for row in table.codes.tolist()})
        error = float(((tok.reconstruct(x) - x) ** 2).sum(1).mean())
        print(f"     fit {quantizer} on {device}: {seconds:.1f} s, {distinct} distinct code "
              f"paths of {len(x)}, reconstruction {error:.4f}")
    cpu, gpu = (fits[quantizer, d] for d in ("cpu", "cuda"))
    cpu_error = float(((cpu.reconstruct(x) - x) ** 2).sum(1).mean())
    gpu_error = float(((gpu.reconstruct(x) - x) ** 2).sum(1).mean())
    check(f"fit {quantizer}: GPU reconstruction within 10 % of the CPU's",
          gpu_error <= 1.1 * cpu_error, f"{gpu_error:.4f} vs {cpu_error:.4f}")
    same = float((cpu.encode(x, device="cuda").codes == cpu.encode(x, device="cpu").codes)
                 .all(1).mean())
    check(f"encode {quantizer}: GPU codes equal the CPU's (one tokenizer)", same >= 0.99,
          f"{same:.4f} of items")

with tempfile.TemporaryDirectory() as folder:
    folder = Path(folder)
    fits["hrq", "cpu"].save(folder / "model")
    pq.write_table(pa.table({"id": ids, "embedding": list(x)}), folder / "vectors.parquet")
    for device in ("cpu", "cuda"):
        start = time.perf_counter()
        encode_catalogue(folder / "model", str(folder / "vectors.parquet"),
                         str(folder / f"{device}.parquet"),
                         fields=None, device=device)
        print(f"     streamed encode on {device}: {time.perf_counter() - start:.2f} s")
    tables = [pq.read_table(folder / f"{d}.parquet").column("tokens").to_pylist()
              for d in ("cpu", "cuda")]
    same = float(np.mean([a == b for a, b in zip(*tables)]))
    check("streamed encode: GPU multitokens equal the CPU's", same >= 0.99, f"{same:.4f} of items")

texts = [f"item {i}: a short description of product number {i} in aisle {i % 17}"
         for i in range(256)]
vectors = {}
for device in ("cpu", "cuda"):
    embedder = make_embedder(EmbedSettings(), device)
    embedder.embed(texts[:8])  # load the model first
    start = time.perf_counter()
    vectors[device] = embedder.embed(texts)
    print(f"     embed on {device}: {len(texts) / (time.perf_counter() - start):.1f} texts/s")
cosine = (vectors["cpu"] * vectors["cuda"]).sum(1) / (
    np.linalg.norm(vectors["cpu"], axis=1) * np.linalg.norm(vectors["cuda"], axis=1))
check("embed: GPU vectors match the CPU's", float(cosine.min()) >= 0.999,
      f"cosine min {cosine.min():.6f}, mean {cosine.mean():.6f}")

rng = np.random.default_rng(0)
tokens = rng.integers(3, 40, (500, 3))  # 500 items' multitokens as vocabulary ids
trie = PrefixTrie(tokens, 40)
sources = tokens[rng.integers(0, 500, (2000, 2))].reshape(2000, 6)
targets = tokens[rng.integers(0, 500, 2000)]
losses = {}
for device in ("cpu", "cuda"):
    config = Seq2SeqConfig(epochs=3, device=device)
    start = time.perf_counter()
    training = train_seq2seq(sources, targets, 40, config)
    beams = beam_search(training.model, sources[:200], trie, width=10)
    losses[device] = training.losses[-1]
    print(f"     seq2seq on {device}: {time.perf_counter() - start:.1f} s, last loss "
          f"{training.losses[-1]:.4f}, beams {beams.shape}")
check("eval: GPU seq2seq loss within 2 % of the CPU's",
      abs(losses["cuda"] - losses["cpu"]) <= 0.02 * losses["cpu"],
      f"{losses['cuda']:.4f} vs {losses['cpu']:.4f}")

print(f"{len(failures)} check(s) failed" if failures else "all CUDA checks passed")
sys.exit(1 if failures else 0)
