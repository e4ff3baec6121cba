"""WordNet mode's model (HRQ paper §4.1): an embedding of every node, trained jointly with an
(H)RQ quantizer whose codes are the nodes' multitokens. There is no encoder: the table is the
embedding network E_θ. Float64 throughout, so that deep nodes can sit close to the boundary
of the ball (the float32 margin would cap every distance from the origin at ~6).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hrqtok.config import ModelConfig
from hrqtok.quantize.build import build_quantizer
from hrqtok.quantize.registry import check_wordnet

INIT_RANGE = 1e-3  # embeddings start uniform in ±INIT_RANGE (Nickel & Kiela 2017)
DTYPE = torch.float64


def hierarchy_model_config(*, latent_dim: int, levels: int, codebook_size: int, quantizer: str,
                           curvature: float, commitment: float,
                           balance: str = ModelConfig.balance) -> ModelConfig:
    """A ModelConfig for an embedding table: no hidden layers, input = latent dimension, and
    the geodesic quantization loss (nodes sit near the boundary of the ball). Quantizers whose
    registry entry refuses WordNet mode (HyperVQ: it learns its code choice from a decoder,
    which this model has not) are refused."""
    check_wordnet(quantizer)
    return ModelConfig(input_dim=latent_dim, hidden_dims=(), latent_dim=latent_dim,
                       levels=levels, codebook_size=codebook_size, quantizer=quantizer,
                       curvature=curvature, commitment=commitment, quantization_loss="geodesic",
                       balance=balance, standardise=False)


class HierarchyModel(nn.Module):
    def __init__(self, config: ModelConfig, n_nodes: int):
        super().__init__()
        self.config = config
        self.manifold = config.manifold
        # Updated by fit.hierarchy's sparse Riemannian steps (fit.node_steps), not by an optimiser.
        self.embeddings = nn.Parameter(torch.zeros(n_nodes, config.latent_dim, dtype=DTYPE),
                                       requires_grad=False)
        self.quantizer = build_quantizer(config).to(DTYPE)

    @torch.no_grad()
    def reset(self, generator: torch.Generator) -> None:
        self.embeddings.copy_(
            (torch.rand(self.embeddings.shape, generator=generator, dtype=DTYPE) * 2 - 1)
            * INIT_RANGE)

    @torch.no_grad()
    def start_from(self, points: Tensor) -> None:
        """Start the embeddings at ``points`` (n, latent_dim), kept inside the ball."""
        self.embeddings.copy_(self.manifold.project(points.to(DTYPE)))

    @torch.no_grad()
    def encode(self, rows: Tensor | None = None, *, beam: int = 1) -> Tensor:
        """Codes (n, levels) of the nodes ``rows`` (all nodes when None)."""
        points = self.embeddings if rows is None else self.embeddings[rows]
        return self.quantizer.encode(points, beam=beam)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes (n, levels) -> quantized points (n, latent_dim)."""
        return self.quantizer.decode_codes(codes)
