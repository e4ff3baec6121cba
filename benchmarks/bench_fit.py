"""Fit throughput (training items per second per epoch, quantized epochs) for both geometries
on 768-d vectors: 4096 items, latent 32, 3 × 256, batch 128."""

import torch
from _common import ROOT  # noqa: F401  (puts the repository on sys.path)

from hrqtok.config import ModelConfig, TrainConfig
from hrqtok.fit.items import fit_model

torch.manual_seed(0)
centers = torch.randn(64, 768)
x = torch.nn.functional.normalize(centers[torch.randint(64, (4096,))] + 0.7 * torch.randn(4096, 768), dim=-1)
for geometry in ("hyperbolic", "euclidean"):
    result = fit_model(x, ModelConfig(geometry=geometry),
                       TrainConfig(epochs=5, warmup_epochs=1, patience=100, validation_fraction=0.1))
    rows = [r for r in result.log if r["phase"] == "train"]
    seconds = sum(r["seconds"] for r in rows) / len(rows)
    print(f"{geometry:10s}: {len(result.train_index) / seconds:8,.0f} items/s per epoch "
          f"({seconds:.2f} s/epoch for {len(result.train_index)} items, incl. evaluation and revival)")
