"""Fit options by the names users give them (`hrqtok fit --latent-dim` = ``latent_dim=``), and
the configs they make: one place for the defaults that differ between item and WordNet mode,
for which options apply to which mode and quantizer (read from the quantizer registry), and
for turning options into ModelConfig and TrainConfig / HierarchyTrainConfig. The CLI and
``hrqtok.Tokenizer.fit`` both come here; a bad or inapplicable option is an OptionError (exit 2)
raised before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from hrqtok.config import (
    HierarchyTrainConfig,
    ModelConfig,
    TrainConfig,
    resolve_quantizer,
)
from hrqtok.errors import OptionError
from hrqtok.metrics.quality import auto_codebook_size
from hrqtok.quantize.registry import QUANTIZERS, check_wordnet, spec

DEFAULT_HIDDEN_DIMS = ModelConfig.hidden_dims
AUTO = "auto"  # --codebook-size auto
# Defaults that differ between item mode and WordNet mode: (items, --wordnet)
MODE_DEFAULTS = {"latent_dim": (ModelConfig.latent_dim, 10),
                 "epochs": (TrainConfig.epochs, HierarchyTrainConfig.epochs),
                 "batch_size": (TrainConfig.batch_size, HierarchyTrainConfig.batch_size),
                 "learning_rate": (TrainConfig.learning_rate, HierarchyTrainConfig.learning_rate)}
# WordNet mode on a large hierarchy (LARGE_HIERARCHY nouns or more: all 82,115 nouns): the
# (H)RQ term trains the codebooks without pulling the nouns (commitment 0), after a shorter
# burn-in, with larger batches and each noun's RMS over about its last 100 updates. On all nouns
# the pull towards the codes cost the embedding most of its MAP (0.193 against 0.886) and bought
# the tokens nothing (0.459 against 0.513); on subtrees of up to 46,162 nouns it still bought
# them a little (README, WordNet mode: the recipes by hierarchy size). Nothing pulls the nouns,
# so there is no release; and 100 epochs of codebook tuning, not 400 (on all nouns 400 raised
# the tokens' MAP by 0.003 for 8 more minutes). Options given always win.
LARGE_HIERARCHY = 60_000
LARGE_HIERARCHY_DEFAULTS = {"commitment": 0.0, "burn_in_epochs": 20, "epochs": 90,
                            "batch_size": 1024, "node_rms_decay": 0.99, "release_epochs": 0,
                            "tune_epochs": 100}
# option name -> the train-config field it sets (same name where not listed)
TRAIN_FIELDS = {"tau_max": "temperature_max", "tau_min": "temperature_min",
                "tau_decay": "temperature_decay"}


def _trained(wordnet: bool, quantizer: str) -> bool:
    return wordnet or spec(quantizer).trained


def _items_network(wordnet: bool, quantizer: str) -> bool:
    return not wordnet and spec(quantizer).trained


def _only_for(option: str) -> Callable[[bool, str], bool]:
    return lambda wordnet, quantizer: option in spec(quantizer).options


def _owners(option: str) -> str:
    return " or ".join(f"--quantizer {s.name}" for s in QUANTIZERS.values() if option in s.options)


TRAINED = ", ".join(name for name, entry in QUANTIZERS.items() if entry.trained)

# Options that only some fits use: name -> (applies(wordnet, quantizer), what they need). Giving
# one where it does not apply is refused rather than silently ignored.
MODE_OPTIONS: dict[str, tuple[Callable[[bool, str], bool], str]] = {
    **{name: (lambda w, q: w, "--wordnet") for name in (
        "root", "test_fraction", "negatives", "burn_in_epochs", "eval_every", "quantize_weight",
        "init", "node_optimizer", "node_rms_decay", "burn_in_negatives")},
    **{name: (lambda w, q: not w, "ITEMS (not --wordnet)") for name in (
        "id_field", "text_field", "embedding_field", "input_format", "embedder", "embed_precision",
        "embed_backend", "hidden_dims", "sample")},
    **{name: (_items_network, f"an items fit with a trained quantizer ({TRAINED})")
       for name in ("warmup_epochs", "patience", "validation_fraction", "spread_weight",
                    "refit_deep_codes", "standardise")},
    "balanced_kmeans": (lambda w, q: not w, "ITEMS (not --wordnet)"),
    **{name: (lambda w, q: w and spec(q).trained,
              f"--wordnet with a trained quantizer ({TRAINED})")
       for name in ("release_epochs", "reseat_rounds", "tune_epochs", "tune_learning_rate")},
    **{name: (_trained, "a trained quantizer or --wordnet; the k-means quantizers have no "
                        "network") for name in ("epochs", "batch_size", "learning_rate", "commitment")},
    **{name: (_only_for(name), _owners(name))
       for name in sorted({o for s in QUANTIZERS.values() for o in s.options})},
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class FitOptions:
    """The options of one fit, by CLI name; None means "not given": the mode's default."""

    wordnet: bool = False
    quantizer: str | None = None
    geometry: str | None = None
    levels: int = ModelConfig.levels
    codebook_size: int | str = ModelConfig.codebook_size  # or "auto": from the catalogue size
    latent_dim: int | None = None
    hidden_dims: tuple[int, ...] | None = None
    curvature: float = ModelConfig.curvature
    commitment: float | None = None
    balance: str = ModelConfig.balance  # "sinkhorn": balanced code assignment at every level
    standardise: bool | None = None  # None: the default (on)
    code_point: str | None = None  # hypervq only; None: the default ("mirror")
    seed: int = 0
    # training options given, by CLI name (tau_max sets TrainConfig.temperature_max, …)
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            quantizer = resolve_quantizer(self.quantizer or "", self.geometry or "")
        except ValueError as e:
            raise OptionError("--quantizer / --geometry", str(e)) from None
        object.__setattr__(self, "quantizer", quantizer)
        if isinstance(self.codebook_size, str) and self.codebook_size != AUTO:
            raise OptionError("--codebook-size", f"expected a number or {AUTO}, got "
                              f"{self.codebook_size!r}")
        if self.wordnet:
            try:
                check_wordnet(quantizer)
            except ValueError as e:
                raise OptionError("--quantizer", str(e)) from None
        if not self.wordnet and not spec(quantizer).trained and (
                self.latent_dim is not None or self.hidden_dims is not None):
            raise OptionError("--quantizer", f"{quantizer} quantizes the input vectors "
                              "themselves; leave out --latent-dim and --hidden-dims")
        self.refuse_inapplicable(self.given())
        if "node_rms_decay" in self.train and self.train.get(
                "node_optimizer", HierarchyTrainConfig.node_optimizer) != "rmsprop":
            raise OptionError("--node-rms-decay", "applies only to --node-optimizer rmsprop; "
                              "leave it out")
        known = {f.name for f in fields(HierarchyTrainConfig if self.wordnet else TrainConfig)}
        for name in self.train:
            if TRAIN_FIELDS.get(name, name) not in known or name == "seed":
                raise OptionError(flag(name), "is not a training option of this mode")
        self.configs(input_dim=self.latent_dim or MODE_DEFAULTS["latent_dim"][self.wordnet], items=1)

    def given(self) -> list[str]:
        """Names of the options given (not left to the mode's default)."""
        names = [name for name in ("latent_dim", "hidden_dims", "commitment", "standardise",
                                   "code_point")
                 if getattr(self, name) is not None]
        return names + list(self.train)

    def refuse_inapplicable(self, given: list[str]) -> None:
        """OptionError for the first of ``given`` that this mode and quantizer do not use."""
        for name in given:
            applies, needs = MODE_OPTIONS.get(name, (None, ""))
            if applies is not None and not applies(self.wordnet, self.quantizer):
                raise OptionError(flag(name), f"applies only to {needs}; leave it out")

    def _default(self, name: str, value: Any) -> Any:
        return MODE_DEFAULTS[name][self.wordnet] if value is None else value

    def codebook_size_for(self, items: int) -> int:
        """s: as given, or for "auto" the size ``auto_codebook_size`` picks for ``items``."""
        if self.codebook_size == AUTO:
            return auto_codebook_size(items, self.levels)
        return int(self.codebook_size)

    def configs(self, *, input_dim: int,
                items: int) -> tuple[ModelConfig, TrainConfig | HierarchyTrainConfig]:
        """The model and training configs for ``items`` inputs of ``input_dim`` (WordNet mode's
        input is its embedding; its defaults change from LARGE_HIERARCHY nouns up). Bad values
        are an OptionError."""
        size = self.codebook_size_for(items)
        train = {TRAIN_FIELDS.get(k, k): v for k, v in self.train.items()}
        commitment = ModelConfig.commitment
        if self.wordnet and items >= LARGE_HIERARCHY:
            large = dict(LARGE_HIERARCHY_DEFAULTS)
            commitment = large.pop("commitment")
            train = {**large, **train}
        for name in ("epochs", "batch_size", "learning_rate"):
            train[name] = self._default(name, train.get(name))
        commitment = commitment if self.commitment is None else self.commitment
        latent_dim = self._default("latent_dim", self.latent_dim)
        try:
            if self.wordnet:
                from hrqtok.models.hierarchy import hierarchy_model_config

                model = hierarchy_model_config(
                    latent_dim=latent_dim, levels=self.levels, codebook_size=size,
                    quantizer=self.quantizer, curvature=self.curvature, commitment=commitment,
                    balance=self.balance)
                if not spec(self.quantizer).trained:  # k-means codebooks: nothing to tune
                    train["tune_epochs"] = train["release_epochs"] = train["reseat_rounds"] = 0
                return model, HierarchyTrainConfig(**train, seed=self.seed)
            trained = spec(self.quantizer).trained
            shape = dict(input_dim=input_dim, latent_dim=latent_dim if trained else input_dim,
                         hidden_dims=(DEFAULT_HIDDEN_DIMS if self.hidden_dims is None
                                      else self.hidden_dims) if trained else ())
            model = ModelConfig(**shape, levels=self.levels, codebook_size=size,
                                quantizer=self.quantizer, curvature=self.curvature,
                                commitment=commitment, balance=self.balance,
                                standardise=(ModelConfig.standardise if self.standardise is None
                                             else self.standardise),
                                code_point=self.code_point or "")
            return model, TrainConfig(**train, seed=self.seed)
        except (ValueError, TypeError) as e:
            raise OptionError("fit options", str(e)) from None
