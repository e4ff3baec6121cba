"""Fit time for both geometries on 768-d vectors: 8,000 items in 64 clusters, latent 32,
3 × 256, defaults (balanced k-means start and refit of the deep codes), 1 warm-up + 5 epochs.
Prints training items per second per epoch (quantized epochs, with evaluation and revival)
and the whole fit's wall time, which includes the k-means starts and the refit.

Usage: python benchmarks/bench_fit.py [--code OLDER_CHECKOUT] (to time another source tree)"""

import sys
import time

import torch
from _common import ROOT

if "--code" in sys.argv:  # an older checkout first on the path, to compare in one session
    sys.path.insert(0, sys.argv[sys.argv.index("--code") + 1])
    for name in [m for m in sys.modules if m.startswith("hrqtok")]:
        del sys.modules[name]

from hrqtok.config import ModelConfig, TrainConfig  # noqa: E402
from hrqtok.fit.items import fit_model  # noqa: E402

print(f"hrqtok from {sys.modules['hrqtok.config'].__file__.rsplit('/hrqtok/', 1)[0] or ROOT}")
torch.manual_seed(0)
centers = torch.randn(64, 768)
x = torch.nn.functional.normalize(centers[torch.randint(64, (8000,))] + 0.7 * torch.randn(8000, 768), dim=-1)
for geometry in ("hyperbolic", "euclidean"):
    start = time.perf_counter()
    result = fit_model(x, ModelConfig(geometry=geometry),
                       TrainConfig(epochs=5, warmup_epochs=1, patience=100, validation_fraction=0.1))
    total = time.perf_counter() - start
    rows = [r for r in result.log if r["phase"] == "train"]
    seconds = sum(r["seconds"] for r in rows) / len(rows)
    print(f"{geometry:10s}: {len(result.train_index) / seconds:8,.0f} items/s per epoch "
          f"({seconds:.2f} s/epoch for {len(result.train_index)} items, incl. evaluation and "
          f"revival); whole fit {total:.1f} s")
