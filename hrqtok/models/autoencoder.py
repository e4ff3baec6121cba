"""Item tokenizers: the (H)RQ-VAE (encoder MLP, residual quantizer, decoder MLP; HRQ paper
§3.2, Appendix C.2) and residual k-means straight on the input vectors.

On the Poincaré ball the input is mapped onto the ball with exp0, runs Möbius layers, is
quantized by HRQ (or HyperVQ levels), decoded with Möbius layers and mapped back with log0. In
Euclidean space the same shapes are the RQ-VAE baseline: the manifold's exp0 and log0 are the
identity there. Both classes share ``ItemModel``'s batched encode and decode; ``build_model``
picks one from a config.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from hrqtok.config import ModelConfig
from hrqtok.models.layers import MobiusMLP, build_mlp
from hrqtok.quantize.build import build_quantizer

ENCODE_BATCH = 4096  # rows per forward pass when encoding many items


class ModelOutput(NamedTuple):
    reconstruction: Tensor  # (n, input_dim) decoder output x̂
    codes: Tensor  # (n, levels); (n, 0) when run without quantization
    loss: Tensor  # () reconstruction_loss + quantization_loss
    reconstruction_loss: Tensor  # () ‖x - x̂‖² summed over dimensions, mean over the batch
    quantization_loss: Tensor  # () codebook + commitment loss; 0 without quantization
    latent: Tensor  # (n, latent_dim) the encoder's output, before quantization
    inputs: Tensor  # (n, input_dim) the inputs as the network saw them (standardised)


class ItemModel(nn.Module):
    """Shared shape of item models: ``latent`` maps inputs to the quantizer's space,
    ``reconstruct`` maps quantized latents back to the inputs' space. The batch methods
    (``latents``, ``encode``, ``decode_codes``) take inputs on any device and run on the
    model's; ``encode`` returns codes on the CPU."""

    config: ModelConfig
    quantizer: nn.Module

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.manifold = config.manifold

    def latent(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def reconstruct(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            return tensor.device
        return torch.device("cpu")

    @torch.no_grad()
    def latents(self, x: Tensor) -> Tensor:
        """Latents of many items, in batches, on the model's device."""
        x = x.to(self.device)
        return torch.cat([self.latent(b) for b in x.split(ENCODE_BATCH)]) if len(x) else x

    @torch.no_grad()
    def encode(self, x: Tensor, *, beam: int = 1) -> Tensor:
        """x: (n, input_dim) -> codes (n, levels) int64 on the CPU (see
        ResidualQuantizer.encode)."""
        return self.quantizer.encode(self.latents(x), beam=beam).cpu()

    @torch.no_grad()
    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes: (n, levels) -> reconstructed inputs (n, input_dim), on the model's device."""
        codes = codes.to(self.device)
        return torch.cat([
            self.reconstruct(self.quantizer.decode_codes(b)) for b in codes.split(ENCODE_BATCH)
        ])


class HRQVAE(ItemModel):
    """Encoder MLP, residual quantizer, decoder MLP, all on the config's manifold. With
    ``config.standardise`` the network works on standardised inputs (``input_mean``,
    ``input_scale``, set by ``standardise_to``: inputs scaled to unit RMS norm), and the
    losses are measured there too, so that neither a tiny nor a huge embedding norm changes
    how training goes."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        dims = [config.input_dim, *config.hidden_dims, config.latent_dim]
        self.encoder = build_mlp(dims, manifold=self.manifold)
        self.decoder = build_mlp(dims[::-1], manifold=self.manifold)
        self.quantizer = build_quantizer(config)
        if config.standardise:
            self.register_buffer("input_mean", torch.zeros(config.input_dim))
            self.register_buffer("input_scale", torch.ones(()))

    @torch.no_grad()
    def standardise_to(self, x: Tensor) -> None:
        """Fit the standardisation on the training inputs x: the scale is their RMS norm (1
        when they are all zero). They are not centred: on MPNet's unit vectors centring cost
        next-item recall on MovieLens (README, Robust tokens), and the encoder's first layer
        can take off a common offset itself. ``input_mean`` stays
        a buffer so that models fitted when it held the mean load and encode as before."""
        if not self.config.standardise:
            return
        scale = float(x.pow(2).sum(-1).mean().sqrt()) if len(x) else 0.0
        self.input_mean.zero_()
        self.input_scale.fill_(scale if 0 < scale < math.inf else 1.0)

    def standardised(self, x: Tensor) -> Tensor:
        return (x - self.input_mean) / self.input_scale if self.config.standardise else x

    def _latent(self, x_std: Tensor) -> Tensor:
        if isinstance(self.encoder, MobiusMLP):  # exp0 and the first layer as one step
            return self.encoder.from_tangent(x_std)
        return self.encoder(self.manifold.expmap0(x_std))

    def _decode(self, z: Tensor) -> Tensor:
        if isinstance(self.decoder, MobiusMLP):  # the last layer and log0 as one step
            return self.decoder.to_tangent(z)
        return self.manifold.logmap0(self.decoder(z))

    def latent(self, x: Tensor) -> Tensor:
        """x: (n, input_dim) -> (n, latent_dim) on the manifold."""
        return self._latent(self.standardised(x))

    def unstandardised(self, x_std: Tensor) -> Tensor:
        return x_std * self.input_scale + self.input_mean if self.config.standardise else x_std

    def reconstruct(self, z: Tensor) -> Tensor:
        """Latent (n, latent_dim) -> (n, input_dim) in the input's Euclidean space."""
        return self.unstandardised(self._decode(z))

    def forward(self, x: Tensor, *, quantize: bool = True) -> ModelOutput:
        x_std = self.standardised(x)
        z = self._latent(x_std)
        if quantize:
            quantized, codes, quantization_loss = self.quantizer(z)
        else:  # autoencoder warm-up
            quantized = z
            codes = torch.empty(x.shape[0], 0, dtype=torch.long, device=x.device)
            quantization_loss = x.new_zeros(())
        x_std_hat = self._decode(quantized)
        reconstruction_loss = (x_std - x_std_hat).pow(2).sum(-1).mean()
        return ModelOutput(
            self.unstandardised(x_std_hat), codes, reconstruction_loss + quantization_loss,
            reconstruction_loss, quantization_loss, z, x_std,
        )


class ResidualKMeans(ItemModel):
    """rq-kmeans / hrq-kmeans: residual k-means on the input vectors, no neural network. On
    the ball the inputs are divided by ``scale`` (their mean norm at fit, so that typical
    tangent lengths are 1 whatever the embedder) and mapped with exp0; reconstructions are
    mapped back with log0 and scaled up again."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.quantizer = build_quantizer(config)
        self.register_buffer("scale", torch.ones(()))

    def latent(self, x: Tensor) -> Tensor:
        return self.manifold.expmap0(x / self.scale)

    def reconstruct(self, z: Tensor) -> Tensor:
        return self.manifold.logmap0(z) * self.scale


def build_model(config: ModelConfig) -> ItemModel:
    """The item model a config asks for: a network when its quantizer is trained."""
    return HRQVAE(config) if config.trained else ResidualKMeans(config)
