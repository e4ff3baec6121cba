"""Pure statistics behind `hrqtok inspect`: code usage, prefixes, collisions, geometry,
reconstruction (HRQ paper Table 4 for the latent-norm coefficient of variation)."""

from __future__ import annotations

import numpy as np
import torch

from hrqtok.metrics.usage import collision_stats, level_usage, prefix_stats
from hrqtok.models.autoencoder import ItemModel
from hrqtok.store.tables import TokenTable


def table_report(table: TokenTable, codebook_size: int) -> dict:
    codes = table.codes
    collisions = collision_stats(codes)
    collisions["disambiguation_size"] = table.disambiguation_size
    return {
        "items": len(table),
        "levels": [{"level": i, **level_usage(codes[:, i], codebook_size)}
                   for i in range(codes.shape[1])],
        "prefixes": prefix_stats(codes),
        "collisions": collisions,
    }


def _spread(mean: float, std: float) -> dict:
    if mean > 0:
        return {"mean": mean, "std": std, "cv": std / mean}
    return {"mean": mean, "std": std, "cv": None, "cv_undefined": "every latent norm is 0"}


class VectorStats:
    """``vector_report``'s figures gathered a chunk of items at a time (float64 sums)."""

    def __init__(self):
        self.n = self.entries = 0
        self.sums = np.zeros(5)  # Σ norm, Σ norm², Σ squared error, Σ cosine, Σ latent distance

    @torch.no_grad()
    def add(self, model: ItemModel, vectors: np.ndarray) -> None:
        x = torch.from_numpy(vectors).to(model.device)
        latents = model.latents(x)
        norms = model.manifold.logmap0(latents).norm(dim=-1).double()
        details = model.quantizer.details(latents)
        x_hat = model.decode_codes(details.codes)
        quantized = model.quantizer.decode_codes(details.codes)
        errors = (x - x_hat).pow(2).double()
        self.sums += [float(norms.sum()), float(norms.pow(2).sum()), float(errors.sum()),
                      float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).double().sum()),
                      float(model.quantizer.distance(latents, quantized).double().sum())]
        self.n += len(x)
        self.entries += errors.numel()

    def report(self) -> dict:
        n = max(self.n, 1)
        mean = self.sums[0] / n
        std = float(np.sqrt(max(self.sums[1] / n - mean * mean, 0.0)))
        return {
            "latent_norm": _spread(float(mean), std),
            "reconstruction": {
                "mse": float(self.sums[2] / max(self.entries, 1)),
                "squared_error": float(self.sums[2] / n),
                "cosine": float(self.sums[3] / n),
                "latent_distance": float(self.sums[4] / n),
            },
        }


def vector_report(model: ItemModel, vectors: np.ndarray, *, chunk: int = 4096) -> dict:
    """Latent norms (‖log0 z‖ on the ball, ‖z‖ in Euclidean space) and reconstruction quality
    of items through their codes, ``chunk`` items at a time."""
    stats = VectorStats()
    for start in range(0, len(vectors), chunk):
        stats.add(model, vectors[start:start + chunk])
    return stats.report()


def codebook_report(model) -> list[dict]:
    """Radii of each level's codes: Euclidean norm, and distance from 0 on the ball."""
    out = []
    for level in range(model.quantizer.levels):
        codebook = model.quantizer.points(level).detach()
        norms = codebook.norm(dim=-1)
        out.append({"level": level, "norm_mean": float(norms.mean()), "norm_max": float(norms.max()),
                    "distance_from_origin_mean": float(model.manifold.dist0(codebook).mean())})
    return out
