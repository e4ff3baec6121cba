"""Frozen configs with commented defaults; stored inside the saved model (saved values win)."""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any

from hrqtok.quantize.registry import (
    GEOMETRY_DEFAULTS,
    HYPERVQ,
    QUANTIZERS,
    QuantizerSpec,
    spec,
)

if typing.TYPE_CHECKING:
    from hrqtok.geometry import Manifold

GEOMETRIES = tuple(GEOMETRY_DEFAULTS)  # "hyperbolic" (the Poincaré ball), "euclidean"
CENTROIDS = ("frechet", "einstein")  # hrq-kmeans cluster centres: Fréchet mean, Einstein midpoint
QUANTIZATION_LOSSES = ("squared", "geodesic")
# how levels assign codes: nearest; balanced (Sinkhorn-Knopp) at every level; at the last only
BALANCES = ("none", "sinkhorn", "sinkhorn-last")
# where a HyperVQ level's code point lies (see quantize/hypervq.py): the origin's mirror image
# in the code's MLR hyperplane, or the HyperVQ paper's point on the hyperplane
CODE_POINTS = ("mirror", "hyperplane")
MAX_LEVELS = 16
MAX_CODEBOOK_SIZE = 65536
# Beyond this the ball's radius 1/sqrt(c) is so small that float32 points cannot be told apart
MAX_CURVATURE = 100.0
MAX_SEED = 2**63 - 1  # torch and numpy take any seed in 0..2^63-1


def require_finite(config: Any) -> None:
    """Every float setting of a config is a finite number (inf or NaN would train garbage)."""
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name.replace('_', ' ')} must be a finite number, got {value}")


def resolve_quantizer(quantizer: str, geometry: str) -> str:
    """The quantizer asked for: ``quantizer``, else the one ``geometry`` stands for (hrq on the
    ball, the default; rq in Euclidean space). Both given, they must agree."""
    if geometry and geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if not quantizer:
        return GEOMETRY_DEFAULTS[geometry or "hyperbolic"]
    found = spec(quantizer)
    if geometry and found.geometry != geometry:
        raise ValueError(f"quantizer {quantizer} works in {found.geometry} space, not {geometry}")
    return quantizer


@dataclass(frozen=True)
class ModelConfig:
    """Shape of an (H)RQ-VAE (HRQ paper §3.2, Appendix C.2)."""

    input_dim: int = 768  # taken from the data at fit time
    hidden_dims: tuple[int, ...] = (512, 256, 128)  # encoder; the decoder mirrors it
    latent_dim: int = 32  # h: dimension of the quantized latent
    levels: int = 3  # k: tokens per item before the disambiguation token
    codebook_size: int = 256  # s: codes per level
    # "hyperbolic" (HRQ-VAE) or "euclidean" (RQ-VAE); "" means the quantizer's, else hyperbolic
    geometry: str = ""
    curvature: float = 1.0  # c of the Poincaré ball; unused in Euclidean mode
    commitment: float = 0.25  # alpha in ||sg[r]-e||^2 + alpha ||r-sg[e]||^2
    quantization_loss: str = "squared"  # "squared": ||r-e||^2 in coordinates; "geodesic": d(r,e)^2
    # one of QUANTIZERS; "" means the geometry's default (hrq on the ball, rq in Euclidean space)
    quantizer: str = ""
    # "sinkhorn": each level's codes assigned with uniform usage over the items encoded
    # together (Sinkhorn-Knopp on the distances): the fitted table, every encode, and the
    # k-means quantizers' Lloyd steps (balanced k-means); "sinkhorn-last": the last level
    # only; "none": the nearest code
    balance: str = "none"
    # the network sees (x - mean) / scale, stored with the weights: scale is the training
    # items' RMS norm, so any embedder's vectors reach the ball at unit typical norm; mean is
    # 0 (models fitted while it was the items' mean keep it). Models fitted before
    # standardisation load with False
    standardise: bool = True
    # HyperVQ levels: one of CODE_POINTS ("" for the other quantizers, which have codebooks;
    # "mirror" when hypervq leaves it out). HyperVQ models fitted before it load with
    # "hyperplane"
    code_point: str = ""

    def __post_init__(self) -> None:
        require_finite(self)
        quantizer = resolve_quantizer(self.quantizer, self.geometry)
        object.__setattr__(self, "quantizer", quantizer)  # frozen: derived once, here
        object.__setattr__(self, "geometry", QUANTIZERS[quantizer].geometry)
        # only an encoder network takes standardised inputs: k-means quantizes the vectors
        object.__setattr__(self, "standardise", self.standardise and self.trained)
        hypervq = self.spec.level_choice == HYPERVQ
        object.__setattr__(self, "code_point", (self.code_point or CODE_POINTS[0]) if hypervq
                           else "")
        if hypervq and self.code_point not in CODE_POINTS:
            raise ValueError(f"code point must be one of {', '.join(CODE_POINTS)}, "
                             f"got {self.code_point!r}")
        if not self.trained and (self.hidden_dims or self.latent_dim != self.input_dim):
            raise ValueError(f"{self.quantizer} quantizes the input vectors: no hidden layers, "
                             "and latent dimension = input dimension")
        if not 1 <= self.levels <= MAX_LEVELS:
            raise ValueError(f"levels must be in 1..{MAX_LEVELS}, got {self.levels}")
        if not 2 <= self.codebook_size <= MAX_CODEBOOK_SIZE:
            raise ValueError(
                f"codebook_size must be in 2..{MAX_CODEBOOK_SIZE}, got {self.codebook_size}"
            )
        if self.latent_dim < 1 or self.input_dim < 1 or any(d < 1 for d in self.hidden_dims):
            raise ValueError("dimensions must be positive")
        if not 0 < self.curvature < MAX_CURVATURE:
            raise ValueError(f"curvature must be in (0, {MAX_CURVATURE:g}), got {self.curvature}")
        if self.balance not in BALANCES:
            raise ValueError(f"balance must be one of {', '.join(BALANCES)}, got {self.balance!r}")
        if self.quantization_loss not in QUANTIZATION_LOSSES:
            raise ValueError(f"quantization_loss must be one of {QUANTIZATION_LOSSES}")
        if self.commitment < 0:
            raise ValueError(f"commitment must be >= 0, got {self.commitment}")

    @property
    def spec(self) -> QuantizerSpec:
        """The quantizer's registry entry."""
        return QUANTIZERS[self.quantizer]

    @property
    def trained(self) -> bool:
        """Trained by gradient steps; False: fitted by residual k-means, with no network."""
        return self.spec.trained

    @property
    def manifold(self) -> Manifold:
        """The latent space: PoincareBall(curvature) or Euclidean()."""
        from hrqtok.geometry import manifold

        return manifold(self.geometry, self.curvature)


@dataclass(frozen=True)
class TrainConfig:
    """How `fit` trains (warm-up, k-means init, RiemannianAdam, revival, early stopping)."""

    epochs: int = 200  # upper bound on epochs with quantization
    warmup_epochs: int = 10  # autoencoder epochs without quantization before k-means init
    batch_size: int = 128  # the paper's batch size
    learning_rate: float = 1e-3
    kmeans_iters: int = 25  # most Lloyd iterations per level (initialisation, k-means quantizers)
    centroid: str = "frechet"  # hrq-kmeans cluster centres: "frechet" mean or "einstein" midpoint
    # levels after the first fit their codes (k-means quantizers, initialisation) by balanced
    # k-means; encoding still takes the nearest code
    balanced_kmeans: bool = True
    # after training, refit the codes of the levels after the first (every level for hypervq,
    # see the level choices' refit_from) to the final encoder's residuals (k-means as at
    # initialisation); kept only if fewer training items collide
    refit_deep_codes: bool = True
    revive_dead_codes: bool = True  # reseed unused codes from badly reconstructed residuals
    # weight of the spread term: the variance of log(latent distance / input distance) over
    # a batch's pairs, which keeps near items apart in the latent (0: off)
    spread_weight: float = 0.0
    # hypervq: Gumbel-softmax temperature tau = max(tau_max * decay^step, tau_min) (Algorithm 1)
    temperature_max: float = 2.0
    temperature_min: float = 0.5
    temperature_decay: float = 0.999  # per optimiser step: tau_min after ~1,400 steps
    validation_fraction: float = 0.1  # held-out slice for early stopping
    patience: int = 20  # epochs without validation improvement before stopping
    seed: int = 0

    def __post_init__(self) -> None:
        require_finite(self)
        if self.epochs < 0 or self.warmup_epochs < 0:
            raise ValueError("epochs must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.spread_weight < 0:
            raise ValueError(f"spread weight must be >= 0, got {self.spread_weight}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("validation_fraction must be in [0, 1)")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.centroid not in CENTROIDS:
            raise ValueError(f"centroid must be one of {CENTROIDS}, got {self.centroid!r}")
        if not 0 < self.temperature_min <= self.temperature_max:
            raise ValueError("temperatures must satisfy 0 < min <= max")
        if not 0 < self.temperature_decay <= 1:
            raise ValueError(f"temperature decay must be in (0, 1], got {self.temperature_decay}")

    def temperature(self, step: int) -> float:
        """HyperVQ's Gumbel-softmax temperature at optimiser step ``step`` (from 0)."""
        return max(self.temperature_max * self.temperature_decay ** step, self.temperature_min)

INITS = ("random", "tree")  # HierarchyTrainConfig.init
NODE_OPTIMIZERS = ("rsgd", "rmsprop")  # HierarchyTrainConfig.node_optimizer
BURN_IN_NEGATIVES = ("uniform", "frequency")  # HierarchyTrainConfig.burn_in_negatives


@dataclass(frozen=True)
class HierarchyTrainConfig:
    """How `fit --wordnet` trains node embeddings and codebooks together (HRQ paper §4.1,
    Appendix C.1; Nickel & Kiela 2017 for the embedding loss, burn-in and RSGD)."""

    epochs: int = 200  # epochs after burn-in, with quantization
    burn_in_epochs: int = 30  # first epochs at a reduced rate, without quantization
    burn_in_factor: float = 0.01  # learning rate multiplier during burn-in (paper: 0.01)
    final_factor: float = 0.01  # the rate decays linearly to this share of it by the last epoch
    batch_size: int = 512  # pairs per step; the loss is summed over a batch's pairs
    # how nodes step (fit.node_steps): "rmsprop" scales each node's Riemannian SGD step by its
    # own running gradient size, "rsgd" is plain Riemannian SGD (Nickel & Kiela)
    node_optimizer: str = "rmsprop"
    # rmsprop: weight of a node's previous mean square gradient length at each of its updates
    # (about its last 1 / (1 - decay) updates count). 0.99 is better on all nouns (train MAP
    # 0.71 against 0.61) but worse on mammals (0.912 against 0.934 without the HRQ term); the
    # defaults of large hierarchies take it (fit.options.LARGE_HIERARCHY_DEFAULTS)
    node_rms_decay: float = 0.9
    learning_rate: float = 0.1  # node step rate (rsgd: per pair; rmsprop: ~ a step's length)
    max_step: float = 1.0  # longest step a node's embedding may take, in manifold length
    codebook_learning_rate: float = 1e-2  # RiemannianAdam rate of the codebooks
    negatives: int = 50  # sampled non-hypernyms of u per pair
    # how burn-in draws them: "frequency", in proportion to each node's train hyponyms (Nickel &
    # Kiela's reference code), so that the inner nodes, which crowd the deep ones later, are
    # laid apart before training proper (all nouns, W = 0: train MAP 0.886 over all pairs
    # against 0.71; README, Measured); or "uniform" over the nodes
    burn_in_negatives: str = "frequency"
    negative_group: int = 32  # pairs sharing one draw of negatives (1: a draw per pair)
    quantize_weight: float = 0.1  # weight of the (H)RQ loss of both ends of a pair
    # then, multitokens fixed, epochs that tune only the codebooks on the ranking loss of the
    # decoded multitokens (trained quantizers; 0: none), at this RiemannianAdam rate. 400
    # rather than 100: tokens' train MAP 0.853 -> 0.858 on mammals (each of 3 seeds >= 0.85),
    # 0.882 -> 0.897 on animal.n.01; a faster rate did not do it (README, WordNet mode). Large
    # hierarchies keep 100 (fit.options.LARGE_HIERARCHY_DEFAULTS)
    tune_epochs: int = 400
    tune_learning_rate: float = 0.03
    # between the two: epochs, multitokens already fixed, in which the embeddings train without
    # the (H)RQ term (trained quantizers; rate from full to final_factor again). The pull that
    # shaped the multitokens stops bending the embedding: mammals, 5-d, 3 × 32, train MAP 0.67
    # -> 0.96 with the same multitokens (README, WordNet mode: the release)
    release_epochs: int = 40
    # then rounds that re-seat stuck nodes (trained quantizers, after a release): each moves
    # every node with a train hypernym ranked worse than reseat_rank among its negatives next
    # to its most specific train hypernym (fit.reseat), then trains reseat_epochs release
    # epochs (rate from full down again). Off by default: on mammals (5-d, 3 x 32, 3 seeds) 2
    # rounds took the train MR from 1.43 to 1.24 for 0.001 of MAP, but on animal.n.01 (10-d,
    # 3 x 256) they cost 0.012 of train MAP and 0.023 held out (README, WordNet mode)
    reseat_rounds: int = 0
    reseat_epochs: int = 20
    reseat_rank: float = 20.0
    kmeans_iters: int = 25  # Lloyd iterations per level when codebooks start after burn-in
    centroid: str = "frechet"  # hrq-kmeans cluster centres: "frechet" mean or "einstein" midpoint
    revive_dead_codes: bool = True  # reseed unused codes after each epoch
    test_fraction: float = 0.15  # held-out share of the closure pairs
    eval_every: int = 10  # epochs between MR/MAP checks in the log (0: only at the end)
    eval_sample: int = 2000  # hyponyms scored by those checks (the final one scores all)
    # where the node embeddings start: "random" (uniform near the origin, Nickel & Kiela) or
    # "tree" (a layout of the train pairs' hierarchy, fit.tree_init)
    init: str = "random"
    seed: int = 0

    def __post_init__(self) -> None:
        require_finite(self)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.burn_in_negatives not in BURN_IN_NEGATIVES:
            raise ValueError(f"burn-in negatives must be one of {BURN_IN_NEGATIVES}, "
                             f"got {self.burn_in_negatives!r}")
        if self.node_optimizer not in NODE_OPTIMIZERS:
            raise ValueError(f"node optimizer must be one of {NODE_OPTIMIZERS}, "
                             f"got {self.node_optimizer!r}")
        if not 0 <= self.node_rms_decay < 1:
            raise ValueError(f"node RMS decay must be in [0, 1), got {self.node_rms_decay}")
        if min(self.epochs, self.burn_in_epochs, self.tune_epochs, self.release_epochs,
               self.reseat_rounds, self.reseat_epochs) < 0:
            raise ValueError("epochs must be >= 0")
        if self.reseat_rank < 1:
            raise ValueError(f"re-seat rank must be >= 1, got {self.reseat_rank}")
        if min(self.batch_size, self.negatives, self.negative_group) < 1:
            raise ValueError("batch size, negatives and negative group must be >= 1")
        if min(self.learning_rate, self.codebook_learning_rate, self.burn_in_factor,
               self.tune_learning_rate) <= 0:
            raise ValueError("learning rates must be > 0")
        if not 0 < self.final_factor <= 1:
            raise ValueError(f"final factor must be in (0, 1], got {self.final_factor}")
        if self.max_step <= 0:
            raise ValueError(f"max step must be > 0, got {self.max_step}")
        if self.quantize_weight < 0:
            raise ValueError(f"quantize weight must be >= 0, got {self.quantize_weight}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test fraction must be in (0, 1), got {self.test_fraction}")
        if self.eval_every < 0 or self.eval_sample < 1:
            raise ValueError("eval_every must be >= 0 and eval_sample >= 1")
        if self.centroid not in CENTROIDS:
            raise ValueError(f"centroid must be one of {CENTROIDS}, got {self.centroid!r}")


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The downstream seq2seq transformer of `hrqtok eval` and its beam search. Defaults are
    sized for 2 CPU cores (mammal subtree in about a minute per run); the paper's hypernym
    model (Appendix C.1) is d_model 256, 8 heads, 4 + 4 layers, feedforward 1024, 100 epochs."""

    d_model: int = 128
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    feedforward: int = 512
    dropout: float = 0.1
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3  # Adam
    beam: int = 10  # beams per query = the k of recall@k
    seed: int = 0
    device: str = "auto"  # where it trains and generates (hrqtok.devices; the CLI stores the resolved one)

    def __post_init__(self) -> None:
        require_finite(self)
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by {self.heads} heads")
        if min(self.d_model, self.heads, self.encoder_layers, self.decoder_layers,
               self.feedforward, self.batch_size, self.beam) < 1 or self.epochs < 0:
            raise ValueError("sizes must be >= 1 and epochs >= 0")
        if self.learning_rate <= 0 or not 0 <= self.dropout < 1:
            raise ValueError("learning rate must be > 0 and dropout in [0, 1)")


# Next-item retrieval reads histories of up to 19 multitokens (76 ids): an epoch on
# MovieLens-100k costs ~30 s on 2 cores, and validation recall peaked near epoch 10. The
# paper's model (Appendix C.2) is d_model 384, 6 heads, feedforward 1024.
NEXT_ITEM = Seq2SeqConfig(epochs=12)


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def _type_error(key: str, hint: Any, value: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint`` (None when it does)."""
    found = f"found {json_repr(value)}"
    if hint is bool:
        return None if isinstance(value, bool) else f"key '{key}' must be true or false, {found}"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"key '{key}' must be an integer, {found}"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"key '{key}' must be a finite number, {found}"
    if hint is str:
        return None if isinstance(value, str) else f"key '{key}' must be a string, {found}"
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            return f"key '{key}' must be a list, {found}"
        (item, _) = typing.get_args(hint)
        return next((e for e in (_type_error(f"{key}[{i}]", item, v) for i, v in enumerate(value))
                     if e), None)
    return None


def json_repr(value: Any) -> str:
    """A short rendering of a JSON value for messages."""
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 40 else text[:37] + "..."


def from_dict(cls: type, data: Any, *, where: str = "") -> Any:
    """Rebuild a config from JSON, checking every key's type; unknown keys are an error so that
    a newer file is not misread. ValueError messages name the key (``where.key``)."""
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        raise ValueError(f"key '{where or cls.__name__}' must be an object, found {json_repr(data)}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(prefix + k for k in unknown)}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        problem = _type_error(prefix + key, hints[key], value)
        if problem:
            raise ValueError(problem)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**values)
    except ValueError as e:
        raise ValueError(f"{where or cls.__name__}: {e}") from None
