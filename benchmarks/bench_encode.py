"""Encode throughput of the full encoder + quantizer next to the encoder MLP alone, on the same
batch (768-d input, latent 32, 3 levels × 256 codes). The ratio is the quantizer's overhead."""

import torch
from _common import best_time

from hrqtok.config import ModelConfig
from hrqtok.model import HRQVAE

torch.manual_seed(0)
batch = torch.nn.functional.normalize(torch.randn(4096, 768), dim=-1)
for geometry in ("hyperbolic", "euclidean"):
    model = HRQVAE(ModelConfig(geometry=geometry)).eval()
    full = best_time(lambda: model.encode(batch))
    with torch.no_grad():
        mlp = best_time(lambda: model.latents(batch))
    print(f"{geometry:10s}: encoder+quantizer {len(batch) / full:9,.0f} items/s, encoder alone "
          f"{len(batch) / mlp:9,.0f} items/s; full/encoder time ratio {full / mlp:.2f}")
