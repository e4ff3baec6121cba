"""The one list of quantizers. Each entry says what a quantizer is: its geometry, how a level
picks a code, whether it is trained or fitted by residual k-means, which modes accept it and
which options only it takes. The factory (``build.build_quantizer``), configs, the CLI's choices
and help, and the mode checks all read this list, so adding a quantizer is one module (a level
choice, when it picks codes in a new way) plus one entry here.

Data only, with no torch import: configs and the CLI's help read it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

NEAREST = "hrqtok.quantize.nearest:NearestCode"
HYPERVQ = "hrqtok.quantize.hypervq:MLRGumbel"


@dataclass(frozen=True)
class QuantizerSpec:
    name: str  # the --quantizer value
    geometry: str  # "hyperbolic" (the Poincaré ball) or "euclidean"
    help: str  # one line for `hrqtok fit --help`
    level_choice: str  # "module:Class" of the LevelChoice each level uses
    trained: bool = True  # False: residual k-means on the input vectors (items) or on the
    # final embeddings (WordNet), with no network and no gradient steps
    wordnet: str | None = None  # why `fit --wordnet` refuses it (None: accepted)
    options: tuple[str, ...] = ()  # fit options (parameter names) that only this one takes


QUANTIZERS: dict[str, QuantizerSpec] = {spec.name: spec for spec in (
    QuantizerSpec("hrq", "hyperbolic", "HRQ-VAE (hyperbolic)", NEAREST),
    QuantizerSpec("rq", "euclidean", "RQ-VAE (Euclidean)", NEAREST),
    QuantizerSpec("hypervq", "hyperbolic", "HRQ-VAE with HyperVQ (MLR) levels", HYPERVQ,
                  wordnet="hypervq learns its code choice from a decoder's reconstruction loss, "
                          "and WordNet mode has no decoder",
                  options=("code_point", "tau_max", "tau_min", "tau_decay")),
    QuantizerSpec("hrq-kmeans", "hyperbolic", "residual k-means on the ball", NEAREST,
                  trained=False, options=("centroid",)),
    QuantizerSpec("rq-kmeans", "euclidean", "residual k-means", NEAREST, trained=False),
)}
# the quantizer each geometry stands for when only --geometry is given
GEOMETRY_DEFAULTS = {"hyperbolic": "hrq", "euclidean": "rq"}


def spec(name: str) -> QuantizerSpec:
    """The registry entry of ``name``; ValueError listing the known ones otherwise."""
    if name not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {name!r}")
    return QUANTIZERS[name]


def check_wordnet(name: str) -> None:
    """ValueError, saying why and what to use instead, when WordNet mode refuses ``name``."""
    refusal = spec(name).wordnet
    if refusal:
        accepted = [n for n, s in QUANTIZERS.items() if s.wordnet is None]
        raise ValueError(f"{refusal}; use {', '.join(accepted)}")


def fit_help() -> str:
    """--quantizer's help text, from the entries."""
    untrained = " / ".join(s.name for s in QUANTIZERS.values() if not s.trained)
    trained = "; ".join(f"{s.name}: {s.help}" for s in QUANTIZERS.values() if s.trained)
    return (f"{trained}; {untrained}: residual k-means on the input vectors, no network "
            f"(default: {GEOMETRY_DEFAULTS['hyperbolic']}, or {GEOMETRY_DEFAULTS['euclidean']} "
            "with --geometry euclidean).")
