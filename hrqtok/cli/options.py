"""Options shared by several commands, declared once, and the helpers that read them."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from hrqtok.config import CENTROIDS, GEOMETRIES
from hrqtok.fit.options import MODE_DEFAULTS
from hrqtok.quantize.registry import QUANTIZERS
from hrqtok.sources.embedder import PRECISIONS
from hrqtok.sources.items import ItemFields
from hrqtok.sources.packaged import DEFAULT_EMBEDDER

Geometry = Enum("Geometry", {g: g for g in GEOMETRIES}, type=str)
Quantizer = Enum("Quantizer", {q: q for q in QUANTIZERS}, type=str)
Centroid = Enum("Centroid", {c: c for c in CENTROIDS}, type=str)
OutputFormat = Enum("OutputFormat", {f: f for f in ("parquet", "jsonl", "csv", "strings")}, type=str)
Precision = Enum("Precision", {p: p for p in PRECISIONS}, type=str)

ItemsArg = Annotated[Optional[str], typer.Argument(
    help="Items file (JSONL, Parquet or CSV); - reads JSONL from stdin.", show_default=False)]
IdOpt = Annotated[Optional[str], typer.Option(help="Field holding item ids [default: id].")]
TextOpt = Annotated[Optional[list[str]], typer.Option(
    help="Field holding text; repeat to join several [default: text].")]
EmbeddingOpt = Annotated[Optional[str], typer.Option(
    help="Field holding a precomputed vector; skips the embedder.")]
EmbedderOpt = Annotated[Optional[str], typer.Option(
    help=f"Sentence model: name, folder or hub name [default: {DEFAULT_EMBEDDER}, packaged].")]
PrecisionOpt = Annotated[Optional[Precision], typer.Option(
    help="Embedder precision; bfloat16 is ~3x faster on CPU.")]


def _mode_help(name: str, text: str = "") -> str:
    items, wordnet = MODE_DEFAULTS[name]
    return f"{text} [default: {items}; {wordnet} with --wordnet]".strip()


def _fields(id_field, text_field, embedding_field) -> ItemFields | None:
    if id_field is None and not text_field and embedding_field is None:
        return None  # commands on a fitted model then reuse the fields it was fitted with
    return ItemFields(id_field or "id", tuple(text_field or ("text",)), embedding_field)


def _embed(embedder, precision):
    from hrqtok.pipeline import EmbedSettings

    if embedder is None and precision is None:
        return None
    return EmbedSettings(embedder or DEFAULT_EMBEDDER, precision.value if precision else "float32")
