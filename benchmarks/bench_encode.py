"""Encode throughput of the full encoder + quantizer next to the encoder MLP alone, on the same
batch (768-d input, latent 32, 3 levels × 256 codes). The ratio is the quantizer's overhead."""

import torch
from _common import best_time

from hrqtok.config import ModelConfig
from hrqtok.models.autoencoder import HRQVAE

torch.manual_seed(0)
batch = torch.nn.functional.normalize(torch.randn(4096, 768), dim=-1)
for geometry in ("hyperbolic", "euclidean"):
    model = HRQVAE(ModelConfig(geometry=geometry)).eval()
    full = best_time(lambda: model.encode(batch))
    with torch.no_grad():
        mlp = best_time(lambda: model.latents(batch))
    print(f"{geometry:10s}: encoder+quantizer {len(batch) / full:9,.0f} items/s, encoder alone "
          f"{len(batch) / mlp:9,.0f} items/s; full/encoder time ratio {full / mlp:.2f}")

# Beam search over code paths (`encode --beam B`) on 8,192 Gaussian latents (32-d, std 0.1 per
# dimension; on the ball for HRQ), codebooks started by k-means on them as fit does:
# quantizer throughput and mean reconstruction error d(z, y), next to greedy in the same run.
from hrqtok import geometry  # noqa: E402

generator = torch.Generator().manual_seed(0)
raw = torch.randn(8192, 32, generator=generator) * 0.1
for geometry_name in ("hyperbolic", "euclidean"):
    q = HRQVAE(ModelConfig(geometry=geometry_name)).quantizer
    latents = geometry.project(raw, c=1.0) if geometry_name == "hyperbolic" else raw
    q.initialise(latents, iters=10, generator=torch.Generator().manual_seed(0))
    greedy_time = best_time(lambda: q.encode(latents), repeat=3)
    greedy_error = q.distance(latents, q.decode_codes(q.encode(latents))).mean()
    for beam in (4, 16):
        seconds = best_time(lambda: q.encode(latents, beam=beam), repeat=2)
        error = q.distance(latents, q.decode_codes(q.encode(latents, beam=beam))).mean()
        print(f"{geometry_name:10s}: quantizer greedy {len(latents) / greedy_time:9,.0f} items/s, "
              f"error {greedy_error:.4f}; beam {beam:2d} {len(latents) / seconds:9,.0f} items/s "
              f"({seconds / greedy_time:.1f}x the time), error {error:.4f} "
              f"({(1 - error / greedy_error):.1%} lower)")
