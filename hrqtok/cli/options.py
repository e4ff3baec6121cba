"""Options shared by several commands, declared once, and the helpers that read them."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from hrqtok.config import (
    BALANCES,
    BURN_IN_NEGATIVES,
    CENTROIDS,
    CODE_POINTS,
    GEOMETRIES,
    INITS,
    NODE_OPTIMIZERS,
)
from hrqtok.fit.options import LARGE_HIERARCHY, LARGE_HIERARCHY_DEFAULTS, MODE_DEFAULTS
from hrqtok.quantize.registry import QUANTIZERS
from hrqtok.sources.embedder import BACKENDS, PRECISIONS
from hrqtok.sources.items import ItemFields
from hrqtok.sources.packaged import DEFAULT_EMBEDDER

Geometry = Enum("Geometry", {g: g for g in GEOMETRIES}, type=str)
Quantizer = Enum("Quantizer", {q: q for q in QUANTIZERS}, type=str)
Balance = Enum("Balance", {b: b for b in BALANCES}, type=str)
Centroid = Enum("Centroid", {c: c for c in CENTROIDS}, type=str)
Init = Enum("Init", {i: i for i in INITS}, type=str)
NodeOptimizer = Enum("NodeOptimizer", {o: o for o in NODE_OPTIMIZERS}, type=str)
BurnInNegatives = Enum("BurnInNegatives", {n: n for n in BURN_IN_NEGATIVES}, type=str)
CodePoint = Enum("CodePoint", {p: p for p in CODE_POINTS}, type=str)
OutputFormat = Enum("OutputFormat", {f: f for f in ("parquet", "jsonl", "csv", "strings")}, type=str)
Precision = Enum("Precision", {p: p for p in PRECISIONS}, type=str)

ItemsArg = Annotated[Optional[str], typer.Argument(
    help="Items file (JSONL, Parquet or CSV), a folder of Parquet files, or a URI pyarrow "
         "reads (s3://…, gs://…, file://…); - reads JSONL from stdin.", show_default=False)]
IdOpt = Annotated[Optional[str], typer.Option(help="Field holding item ids (default: id).")]
TextOpt = Annotated[Optional[list[str]], typer.Option(
    help="Field holding text; repeat to join several (default: text).")]
EmbeddingOpt = Annotated[Optional[str], typer.Option(
    help="Field holding a precomputed vector; skips the embedder.")]
EmbedderOpt = Annotated[Optional[str], typer.Option(
    help=f"Sentence model: name, folder or hub name (default: {DEFAULT_EMBEDDER}, packaged).")]
PrecisionOpt = Annotated[Optional[Precision], typer.Option(
    help="Embedder precision (default: float32). On a 2-core CPU with AVX-512 and AMX, "
         "bfloat16 was 1.6-3.8x faster, cosine 0.9999 to float32; int8 (with --embed-backend "
         "openvino) 3.1-5.2x, mean cosine 0.995. With AVX2 alone neither is faster (torch "
         "bfloat16 8x slower): a warning says so.")]
Backend = Enum("Backend", {b: b for b in BACKENDS}, type=str)
BackendOpt = Annotated[Optional[Backend], typer.Option(
    help="What runs the embedder (default: torch); openvino: the CPU plugin of OpenVINO, "
         "the model converted once into the cache (pip install 'hrqtok[openvino]').")]
DeviceOpt = Annotated[str, typer.Option(
    help="Where the work runs: auto (the GPU when torch sees one, else the CPU), cpu, cuda "
         "or cuda:N.")]


Engine = Enum("Engine", {e: e for e in ("local", "ray")}, type=str)  # hrqtok.engines
EngineOpt = Annotated[Engine, typer.Option(
    help="Where items are embedded and encoded: local (this process) or ray (the actors of a "
         "Ray cluster; files only, not stdin).")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    help="With --engine ray: the cluster to join (auto: the one `ray start` made here; "
         "ray://host:10001 for a remote head). Default: a local cluster for this run.",
    show_default=False)]
RayWorkersOpt = Annotated[Optional[int], typer.Option(
    min=1, help="With --engine ray: actors in the pool, each loading the model once "
                "(default: one per CPU of the cluster; the CPUs are shared among them).",
    show_default=False)]


def _engine(engine, address: str | None, workers: int | None):
    """--engine and its --ray-* options: None for the local engine, else RaySettings."""
    from hrqtok.engines import RaySettings

    if engine.value == "local":
        for name, value in (("--ray-address", address), ("--ray-workers", workers)):
            if value is not None:
                raise typer.BadParameter("needs --engine ray", param_hint=name)
        return None
    return RaySettings(address=address, workers=workers)


def _device(text: str) -> str:
    """--device, checked before any work: the torch device's name (auto resolved)."""
    from hrqtok.devices import resolve_device
    from hrqtok.errors import OptionError

    try:
        return str(resolve_device(text))
    except OptionError as e:
        raise typer.BadParameter(str(e).removeprefix("--device: "), param_hint="--device") from None


def _mode_help(name: str, text: str = "") -> str:
    items, wordnet = MODE_DEFAULTS[name]
    large = (f", {LARGE_HIERARCHY_DEFAULTS[name]} on {LARGE_HIERARCHY:,} nouns or more"
             if name in LARGE_HIERARCHY_DEFAULTS else "")
    return f"{text} (default: {items}; {wordnet} with --wordnet{large})".strip()


def _large_help(name: str) -> str:
    """What a WordNet default becomes on a large hierarchy, for an option's help."""
    return (f"With --wordnet on {LARGE_HIERARCHY:,} nouns or more the default is "
            f"{LARGE_HIERARCHY_DEFAULTS[name]}.")


def _fields(id_field, text_field, embedding_field) -> ItemFields | None:
    if id_field is None and not text_field and embedding_field is None:
        return None  # commands on a fitted model then reuse the fields it was fitted with
    return ItemFields(id_field or "id", tuple(text_field or ("text",)), embedding_field)


def _embed(embedder, precision, backend=None):
    from hrqtok.pipeline import EmbedSettings

    if embedder is None and precision is None and backend is None:
        return None
    return EmbedSettings(embedder or DEFAULT_EMBEDDER, precision.value if precision else "float32",
                         backend=backend.value if backend else "torch")

MaxCollisionOpt = Annotated[Optional[float], typer.Option(
    min=0.0, max=1.0, help="Fail (exit 1, nothing written) when a larger share of items collide.",
    show_default=False)]
MaxDisambiguationOpt = Annotated[Optional[int], typer.Option(
    min=1, help="Fail (exit 1, nothing written) when the disambiguation token needs more values.",
    show_default=False)]


def _limits(max_collision_rate, max_disambiguation):
    from hrqtok.metrics.quality import QualityLimits

    return QualityLimits(max_collision_rate, max_disambiguation)


def _codebook_size(text: str) -> int | str:
    """--codebook-size: a number of codes, or auto."""
    from hrqtok.config import MAX_CODEBOOK_SIZE

    if text == "auto":
        return text
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 2 <= size <= MAX_CODEBOOK_SIZE:
        raise typer.BadParameter(f"expected auto or a number in 2..{MAX_CODEBOOK_SIZE}, got {text!r}")
    return size
