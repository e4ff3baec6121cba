"""`hrqtok fit`: options in, one library call, a summary out."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from hrqtok.cli.console import (
    InputFormatOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    SeedOpt,
    emit,
    exit_on_errors,
    progress_bars,
)
from hrqtok.cli.options import (
    BackendOpt,
    Balance,
    BurnInNegatives,
    Centroid,
    CodePoint,
    EmbedderOpt,
    EmbeddingOpt,
    Geometry,
    IdOpt,
    Init,
    ItemsArg,
    MaxCollisionOpt,
    MaxDisambiguationOpt,
    NodeOptimizer,
    PrecisionOpt,
    Quantizer,
    TextOpt,
    _codebook_size,
    _device,
    _embed,
    _fields,
    _large_help,
    _limits,
    _mode_help,
)
from hrqtok.cli.render import fit_summary
from hrqtok.config import (
    MAX_CURVATURE,
    MAX_LEVELS,
    HierarchyTrainConfig,
    TrainConfig,
)
from hrqtok.fit.options import FitOptions
from hrqtok.jsonsafe import dumps
from hrqtok.quantize.registry import fit_help
from hrqtok.sources.items import ItemFields


def fit(
    ctx: typer.Context,
    items: ItemsArg = None,
    model: ModelOpt = Path("hrqtok-model"),
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the model already at --model (only an hrqtok model directory "
                        "is ever replaced).")] = False,
    wordnet: Annotated[bool, typer.Option(
        "--wordnet", help="Train on the WordNet noun hypernym closure instead of ITEMS.")] = False,
    root: Annotated[Optional[str], typer.Option(
        help="With --wordnet: only this synset's subtree, e.g. mammal.n.01.")] = None,
    quantizer: Annotated[Optional[Quantizer], typer.Option(
        help=fit_help(), show_default=False)] = None,
    geometry: Annotated[Optional[Geometry], typer.Option(
        help="Shorthand: hyperbolic = --quantizer hrq, euclidean = --quantizer rq.",
        show_default=False)] = None,
    levels: Annotated[int, typer.Option(min=1, max=MAX_LEVELS, help="Tokens per item (k).")] = 3,
    codebook_size: Annotated[str, typer.Option(
        parser=_codebook_size, metavar="S|auto",
        help="Codes per level (s), or auto: the smallest power of two with s^k >= 8 x the "
             "number of items, within 8..1024.")] = "256",
    latent_dim: Annotated[Optional[int], typer.Option(
        min=1, help=_mode_help("latent_dim", "Latent dimension (h)."), show_default=False)] = None,
    hidden_dims: Annotated[Optional[str], typer.Option(
        help="Encoder hidden sizes; the decoder mirrors them (default: 512,256,128).",
        show_default=False)] = None,
    curvature: Annotated[float, typer.Option(
        min=1e-6, max=MAX_CURVATURE, help="Curvature c of the ball, below 100.")] = 1.0,
    commitment: Annotated[float, typer.Option(
        min=0.0, help="Commitment weight alpha: how hard the (H)RQ term pulls the latents "
                      "towards their codes. " + _large_help("commitment"))] = 0.25,
    balance: Annotated[Balance, typer.Option(
        help="sinkhorn: assign each level's codes with uniform usage over the items encoded "
             "together (Sinkhorn-Knopp on the distances): the fitted table and every encode; "
             "the k-means quantizers fit balanced k-means. sinkhorn-last: the last level only "
             "(fewer collisions, the upper levels unchanged).")
    ] = Balance.none,
    standardise: Annotated[Optional[bool], typer.Option(
        "--standardise/--no-standardise",
        help="Scale the inputs to unit RMS norm before the network (stored in the model; "
             "not centred; default: standardise).", show_default=False)] = None,
    spread_weight: Annotated[float, typer.Option(
        min=0.0, help="Weight of the term that keeps near items apart in the latent "
                      "(0: off).")] = TrainConfig.spread_weight,
    refit_deep_codes: Annotated[bool, typer.Option(
        help="After training, refit the codes of levels 2.. (every level for hypervq) to the "
             "final latents (kept only if fewer items collide).")] = TrainConfig.refit_deep_codes,
    balanced_kmeans: Annotated[bool, typer.Option(
        help="Fit the codes of levels 2.. by balanced k-means (the k-means quantizers, and "
             "the initialisation); items still take their nearest code.")] = TrainConfig.balanced_kmeans,
    epochs: Annotated[Optional[int], typer.Option(
        min=0, help=_mode_help("epochs", "Most epochs with quantization."), show_default=False)] = None,
    warmup_epochs: Annotated[int, typer.Option(min=0, help="Autoencoder epochs before k-means init.")] = 10,
    batch_size: Annotated[Optional[int], typer.Option(
        min=1, help=_mode_help("batch_size"), show_default=False)] = None,
    learning_rate: Annotated[Optional[float], typer.Option(
        min=1e-9, help=_mode_help("learning_rate"), show_default=False)] = None,
    patience: Annotated[int, typer.Option(min=1, help="Early stopping patience (epochs).")] = 20,
    kmeans_iters: Annotated[int, typer.Option(
        min=0, help="Most Lloyd iterations per level: codebook initialisation, and the k-means "
                    "quantizers (which stop earlier once assignments settle).")] = TrainConfig.kmeans_iters,
    centroid: Annotated[Centroid, typer.Option(
        help="hrq-kmeans cluster centres: Fréchet mean, or the (cheaper) Einstein midpoint.")] = Centroid.frechet,
    code_point: Annotated[Optional[CodePoint], typer.Option(
        help="hypervq: where a code's point lies. mirror: the origin's mirror image in the "
             "code's MLR hyperplane (the centre of its cell); hyperplane: the HyperVQ paper's "
             "point on the hyperplane, which leaves each residual half its cell's centre "
             "(default: mirror).", show_default=False)] = None,
    tau_max: Annotated[float, typer.Option(
        min=1e-6, help="hypervq: Gumbel-softmax temperature at the first step.")] = TrainConfig.temperature_max,
    tau_min: Annotated[float, typer.Option(
        min=1e-6, help="hypervq: lowest temperature.")] = TrainConfig.temperature_min,
    tau_decay: Annotated[float, typer.Option(
        min=1e-6, max=1.0, help="hypervq: temperature factor per optimiser step.")] = TrainConfig.temperature_decay,
    validation_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.1,
    test_fraction: Annotated[float, typer.Option(
        help="With --wordnet: held-out share of the closure pairs, in (0, 1).")] = 0.15,
    negatives: Annotated[int, typer.Option(min=1, help="With --wordnet: sampled non-hypernyms per pair.")] = 50,
    burn_in_epochs: Annotated[int, typer.Option(
        min=0, help="With --wordnet: epochs at a low rate before the codebooks start. "
                    + _large_help("burn_in_epochs"))] = HierarchyTrainConfig.burn_in_epochs,
    burn_in_negatives: Annotated[BurnInNegatives, typer.Option(
        help="With --wordnet: how burn-in draws negatives. uniform: over all nouns; frequency: "
             "in proportion to each noun's train hyponyms (Nickel & Kiela's code), which lays "
             "the inner nouns apart first.")] = BurnInNegatives(HierarchyTrainConfig.burn_in_negatives),
    init: Annotated[Init, typer.Option(
        help="With --wordnet: where node embeddings start. random: uniform near the origin "
             "(Nickel & Kiela); tree: a layout of the train pairs' hierarchy, each node in a "
             "narrowing cone around its nearest train hypernym.")] = Init.random,
    node_optimizer: Annotated[NodeOptimizer, typer.Option(
        help="With --wordnet: how node embeddings step. rmsprop: Riemannian SGD scaled by each "
             "node's own running gradient size (every step about --learning-rate long); rsgd: "
             "plain Riemannian SGD, --learning-rate per pair (Nickel & Kiela).")] = NodeOptimizer(HierarchyTrainConfig.node_optimizer),
    node_rms_decay: Annotated[float, typer.Option(
        min=0.0, max=0.999999, help="With --wordnet and --node-optimizer rmsprop: weight of a "
             "node's previous mean square gradient length at each update (about the last "
             "1/(1-decay) updates count). " + _large_help("node_rms_decay"))] = HierarchyTrainConfig.node_rms_decay,
    eval_every: Annotated[int, typer.Option(
        min=0, help="With --wordnet: epochs between MR/MAP checks on a sample (0: end only).")] = HierarchyTrainConfig.eval_every,
    quantize_weight: Annotated[float, typer.Option(
        min=0.0, help="With --wordnet: weight of the (H)RQ loss against the ranking loss.")] = HierarchyTrainConfig.quantize_weight,
    release_epochs: Annotated[int, typer.Option(
        min=0, help="With --wordnet: epochs after the multitokens are fixed in which the node "
             "embeddings train without the (H)RQ term, at the full rate decaying again (0: none). " + _large_help("release_epochs"))] = HierarchyTrainConfig.release_epochs,
    reseat_rounds: Annotated[int, typer.Option(
        min=0, help="With --wordnet, after a release: rounds that move each node with a train "
             "hypernym ranked worse than 20th among its negatives next to its most specific "
             "train hypernym, then train 20 more release epochs (0: none).")] = HierarchyTrainConfig.reseat_rounds,
    tune_epochs: Annotated[int, typer.Option(
        min=0, help="With --wordnet: epochs that then tune only the codebooks, on the ranking loss of the nodes' fixed multitokens (0: none). " + _large_help("tune_epochs"))] = HierarchyTrainConfig.tune_epochs,
    seed: SeedOpt = 0,
    id_field: IdOpt = None,
    text_field: TextOpt = None,
    embedding_field: EmbeddingOpt = None,
    input_format: InputFormatOpt = None,
    embedder: EmbedderOpt = None,
    embed_precision: PrecisionOpt = None,
    embed_backend: BackendOpt = None,
    sample: Annotated[Optional[int], typer.Option(
        min=1, help="Fit on a uniform sample of this many items, drawn with --seed; every "
                    "item is still read and checked, only the sample is embedded, and the "
                    "token table is the sample's (`encode` does the rest).",
        show_default=False)] = None,
    device: Annotated[str, typer.Option(
        help="Where the work runs: auto (the GPU when torch sees one, else the CPU), cpu, cuda "
             "or cuda:N. With --wordnet: the CPU only.")] = "auto",
    max_collision_rate: MaxCollisionOpt = None,
    max_disambiguation: MaxDisambiguationOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train an (H)RQ-VAE tokenizer on items, or on WordNet nouns with --wordnet, and store it
    with its token table.

    Examples: hrqtok fit data/wordnet_glosses.jsonl --model my-model;
    hrqtok fit vectors.parquet --embedding-field embedding --sample 200000 --model big;
    hrqtok fit --wordnet --root mammal.n.01 --model mammals;
    hrqtok fit data/wordnet_glosses.jsonl --model my-model --force  (replace my-model)
    """
    if wordnet and items is not None:
        raise typer.BadParameter("give either ITEMS or --wordnet, not both", param_hint="ITEMS")
    if items is None and not wordnet:
        raise typer.BadParameter("give an items file, - for stdin, or --wordnet", param_hint="ITEMS")
    from hrqtok.pipeline import EmbedSettings, fit_items, fit_wordnet

    resolved = _device(device)
    given = _given(ctx)
    train = {name: value.value if isinstance(value, Enum) else value
             for name, value in ctx.params.items() if name in given and name in TRAIN_OPTIONS}
    with exit_on_errors():
        options = FitOptions(
            wordnet=wordnet, quantizer=quantizer.value if quantizer else None,
            geometry=geometry.value if geometry else None, levels=levels,
            codebook_size=codebook_size, latent_dim=latent_dim,
            hidden_dims=_hidden_dims(hidden_dims) if hidden_dims is not None else None,
            curvature=curvature, commitment=commitment if "commitment" in given else None,
            balance=balance.value, standardise=standardise,
            code_point=code_point.value if code_point else None, seed=seed, train=train)
        options.refuse_inapplicable(given)
        limits = _limits(max_collision_rate, max_disambiguation)
        with progress_bars(quiet) as progress:
            if wordnet:
                metrics = fit_wordnet(model_dir=model, options=options, root=root, force=force,
                                      limits=limits, device=device, progress=progress)
            else:
                metrics = fit_items(
                    items, model_dir=model, options=options,
                    fields=_fields(id_field, text_field, embedding_field) or ItemFields(),
                    fmt=input_format.value if input_format else None,
                    embed=_embed(embedder, embed_precision, embed_backend) or EmbedSettings(),
                    force=force, limits=limits, sample=sample, device=resolved,
                    progress=progress)
        if json_out:
            emit(dumps(metrics))
    if not quiet:
        fit_summary(metrics, str(model))


# fit's training options, by parameter name: only those given reach the train config
TRAIN_OPTIONS = ("epochs", "warmup_epochs", "batch_size", "learning_rate", "patience",
                 "spread_weight", "refit_deep_codes", "balanced_kmeans", "kmeans_iters",
                 "centroid", "tau_max", "tau_min", "tau_decay",
                 "validation_fraction", "test_fraction", "negatives", "burn_in_epochs",
                 "eval_every", "quantize_weight", "release_epochs", "reseat_rounds", "tune_epochs",
                 "init",
                 "node_optimizer", "node_rms_decay", "burn_in_negatives")


def _given(ctx: typer.Context) -> list[str]:
    """Parameters the user gave (not left at their defaults)."""
    def source(name: str) -> str:
        found = ctx.get_parameter_source(name)
        return found.name if found is not None else ""
    return [name for name in ctx.params
            if source(name) in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")]


def _hidden_dims(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in text.split(",") if d.strip())
    except ValueError:
        raise typer.BadParameter(f"expected sizes like 512,256,128, got {text!r}",
                                 param_hint="--hidden-dims") from None
