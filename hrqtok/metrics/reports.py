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


def _spread(values: np.ndarray) -> dict:
    mean, std = float(values.mean()), float(values.std())
    if mean > 0:
        return {"mean": mean, "std": std, "cv": std / mean}
    return {"mean": mean, "std": std, "cv": None, "cv_undefined": "every latent norm is 0"}


@torch.no_grad()
def vector_report(model: ItemModel, vectors: np.ndarray) -> dict:
    """Latent norms (‖log0 z‖ on the ball, ‖z‖ in Euclidean space) and reconstruction quality
    of items through their codes."""
    x = torch.from_numpy(vectors)
    latents = model.latents(x)
    tangent = model.manifold.logmap0(latents)
    details = model.quantizer.details(latents)
    x_hat = model.decode_codes(details.codes)
    quantized = model.quantizer.decode_codes(details.codes)
    return {
        "latent_norm": _spread(tangent.norm(dim=-1).numpy()),
        "reconstruction": {
            "mse": float((x - x_hat).pow(2).mean()),
            "squared_error": float((x - x_hat).pow(2).sum(-1).mean()),
            "cosine": float(torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).mean()),
            "latent_distance": float(model.quantizer.distance(latents, quantized).mean()),
        },
    }


@torch.no_grad()
def codebook_report(model) -> list[dict]:
    """Radii of each level's codes: Euclidean norm, and distance from 0 on the ball."""
    out = []
    for level in range(model.quantizer.levels):
        codebook = model.quantizer.points(level).detach()
        norms = codebook.norm(dim=-1)
        out.append({"level": level, "norm_mean": float(norms.mean()), "norm_max": float(norms.max()),
                    "distance_from_origin_mean": float(model.manifold.dist0(codebook).mean())})
    return out
