"""Item tokenizers: the (H)RQ-VAE (encoder MLP, residual quantizer, decoder MLP; HRQ paper
§3.2, Appendix C.2) and residual k-means straight on the input vectors.

Hyperbolic mode maps the input onto the ball with exp0, runs Möbius layers, quantizes with
HRQ (or HyperVQ levels), decodes with Möbius layers and maps back with log0. Euclidean mode is
the RQ-VAE baseline with the same shapes. Both classes share ``Tokenizer``'s batched encode and
decode; ``build_model`` picks one from a config.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from hrqtok import geometry
from hrqtok.config import ModelConfig
from hrqtok.layers import build_mlp
from hrqtok.quantizers import build_quantizer

ENCODE_BATCH = 4096  # rows per forward pass when encoding many items


class ModelOutput(NamedTuple):
    reconstruction: Tensor  # (n, input_dim) decoder output x̂
    codes: Tensor  # (n, levels); (n, 0) when run without quantization
    loss: Tensor  # () reconstruction_loss + quantization_loss
    reconstruction_loss: Tensor  # () ‖x - x̂‖² summed over dimensions, mean over the batch
    quantization_loss: Tensor  # () codebook + commitment loss; 0 without quantization


class Tokenizer(nn.Module):
    """Shared shape of item tokenizers: ``latent`` maps inputs to the quantizer's space,
    ``reconstruct`` maps quantized latents back to the inputs' space."""

    config: ModelConfig
    quantizer: nn.Module

    def latent(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def reconstruct(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def latents(self, x: Tensor) -> Tensor:
        """Latents of many items, in batches."""
        return torch.cat([self.latent(b) for b in x.split(ENCODE_BATCH)]) if len(x) else x

    @torch.no_grad()
    def encode(self, x: Tensor, *, beam: int = 1) -> Tensor:
        """x: (n, input_dim) -> codes (n, levels) int64 (see ResidualQuantizer.encode)."""
        return self.quantizer.encode(self.latents(x), beam=beam)

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes: (n, levels) -> reconstructed inputs (n, input_dim)."""
        return torch.cat([
            self.reconstruct(self.quantizer.decode_codes(b)) for b in codes.split(ENCODE_BATCH)
        ])


class HRQVAE(Tokenizer):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        dims = [config.input_dim, *config.hidden_dims, config.latent_dim]
        mlp = dict(hyperbolic=config.hyperbolic, c=config.curvature)
        self.encoder = build_mlp(dims, **mlp)
        self.decoder = build_mlp(dims[::-1], **mlp)
        self.quantizer = build_quantizer(config)

    def latent(self, x: Tensor) -> Tensor:
        """x: (n, input_dim) -> (n, latent_dim), on the ball in hyperbolic mode."""
        if self.config.hyperbolic:
            x = geometry.expmap0(x, c=self.config.curvature)
        return self.encoder(x)

    def reconstruct(self, z: Tensor) -> Tensor:
        """Latent (n, latent_dim) -> (n, input_dim) in the input's Euclidean space."""
        h = self.decoder(z)
        return geometry.logmap0(h, c=self.config.curvature) if self.config.hyperbolic else h

    def forward(self, x: Tensor, *, quantize: bool = True) -> ModelOutput:
        z = self.latent(x)
        if quantize:
            quantized, codes, quantization_loss = self.quantizer(z)
        else:  # autoencoder warm-up
            quantized = z
            codes = torch.empty(x.shape[0], 0, dtype=torch.long)
            quantization_loss = x.new_zeros(())
        x_hat = self.reconstruct(quantized)
        reconstruction_loss = (x - x_hat).pow(2).sum(-1).mean()
        return ModelOutput(
            x_hat, codes, reconstruction_loss + quantization_loss, reconstruction_loss,
            quantization_loss,
        )


class ResidualKMeans(Tokenizer):
    """rq-kmeans / hrq-kmeans: residual k-means on the input vectors, no neural network. On
    the ball the inputs are divided by ``scale`` (their mean norm at fit, so that typical
    tangent lengths are 1 whatever the embedder) and mapped with exp0; reconstructions are
    mapped back with log0 and scaled up again."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.quantizer = build_quantizer(config)
        self.register_buffer("scale", torch.ones(()))

    def latent(self, x: Tensor) -> Tensor:
        v = x / self.scale
        return geometry.expmap0(v, c=self.config.curvature) if self.config.hyperbolic else v

    def reconstruct(self, z: Tensor) -> Tensor:
        v = geometry.logmap0(z, c=self.config.curvature) if self.config.hyperbolic else z
        return v * self.scale


def build_model(config: ModelConfig) -> Tokenizer:
    """The item tokenizer a config asks for."""
    return ResidualKMeans(config) if config.kmeans else HRQVAE(config)
