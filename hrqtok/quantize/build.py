"""The quantizer factory: a config's registry entry -> its residual quantizer."""

from __future__ import annotations

import importlib

from hrqtok.config import ModelConfig
from hrqtok.quantize.registry import QuantizerSpec, spec
from hrqtok.quantize.residual import ResidualQuantizer


def level_class(entry: QuantizerSpec) -> type:
    """The level choice class an entry names ("module:Class")."""
    module, name = entry.level_choice.split(":")
    return getattr(importlib.import_module(module), name)


def build_quantizer(config: ModelConfig) -> ResidualQuantizer:
    """The residual quantizer a model config asks for."""
    return ResidualQuantizer(
        manifold=config.manifold, choice=level_class(spec(config.quantizer)),
        levels=config.levels, codebook_size=config.codebook_size, dim=config.latent_dim,
        commitment=config.commitment, geodesic_loss=config.quantization_loss == "geodesic",
        balance=config.balance,
        choice_options={"code_point": config.code_point} if config.code_point else None)
