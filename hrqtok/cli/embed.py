"""`hrqtok embed`: texts to a vector table, as a pipeline step of its own."""

from __future__ import annotations

from typing import Annotated

import typer

from hrqtok.cli.console import (
    InputFormatOpt,
    JsonOpt,
    QuietOpt,
    emit,
    err,
    exit_on_errors,
    progress_bars,
)
from hrqtok.cli.options import (
    BackendOpt,
    DeviceOpt,
    EmbedderOpt,
    Engine,
    EngineOpt,
    IdOpt,
    ItemsArg,
    PrecisionOpt,
    RayAddressOpt,
    RayWorkersOpt,
    TextOpt,
    _device,
    _embed,
    _engine,
    _fields,
)
from hrqtok.jsonsafe import dumps


def embed(
    items: ItemsArg = None,
    out: Annotated[str, typer.Option(
        "--out", "-o", help="Parquet file to write (id, embedding), or a folder (DIR/) of "
                            "Parquet part files; either may be a URI (s3://…); never one of "
                            "the inputs.",
        show_default=False)] = "",
    id_field: IdOpt = None,
    text_field: TextOpt = None,
    input_format: InputFormatOpt = None,
    embedder: EmbedderOpt = None,
    embed_precision: PrecisionOpt = None,
    embed_backend: BackendOpt = None,
    device: DeviceOpt = "auto",
    engine: EngineOpt = Engine.local,
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Embed the items' texts into a Parquet vector table (columns id and embedding), a chunk
    at a time: memory stays flat, and a stopped run resumes from the embedding cache. Feed the
    table to fit or encode with --embedding-field embedding.

    Examples: hrqtok embed items.jsonl --out vectors.parquet;
    hrqtok embed s3://shop/items/ --out s3://shop/vectors/;
    hrqtok embed items.jsonl --out vectors.parquet --embed-precision bfloat16;
    hrqtok embed items.jsonl --out vectors.parquet --embed-backend openvino --embed-precision int8;
    hrqtok embed items.jsonl --out vectors.parquet --engine ray --ray-workers 4;
    hrqtok fit vectors.parquet --embedding-field embedding --model m
    """
    from hrqtok.pipeline import EmbedSettings, embed_items
    from hrqtok.sources.items import ItemFields
    from hrqtok.store.part_folders import check_replaceable
    from hrqtok.store.vectors import VECTORS
    from hrqtok.targets import check_output, names_a_folder

    if items is None:
        raise typer.BadParameter("give an items file, or - for stdin", param_hint="ITEMS")
    if not out or out == "-":
        raise typer.BadParameter("name a Parquet file to write", param_hint="--out")
    device = _device(device)
    ray = _engine(engine, ray_address, ray_workers)
    with exit_on_errors():
        check_output(out, inputs=(items,), folders=True, remote=True)
        if names_a_folder(out):
            check_replaceable(out, VECTORS)
        with progress_bars(quiet) as progress:
            settings = _embed(embedder, embed_precision, embed_backend) or EmbedSettings()
            summary = embed_items(items, out,
                                  fields=_fields(id_field, text_field, None) or ItemFields(),
                                  fmt=input_format.value if input_format else None,
                                  embed=settings, device=device, engine=ray, progress=progress)
    if json_out:
        emit(dumps(summary))
    if not quiet:
        err.print(f"wrote {summary['items']:,} vectors of {summary['dim']} dimensions "
                  f"({summary['embedder']}) to {summary['out']}")
