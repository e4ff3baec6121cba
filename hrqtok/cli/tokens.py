"""`hrqtok encode`, `decode` and `inspect`: token tables in and out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hrqtok.cli.console import (
    InputFormatOpt,
    JsonOpt,
    ModelOpt,
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
    EmbeddingOpt,
    Engine,
    EngineOpt,
    IdOpt,
    ItemsArg,
    MaxCollisionOpt,
    MaxDisambiguationOpt,
    OutputFormat,
    PrecisionOpt,
    RayAddressOpt,
    RayWorkersOpt,
    TextOpt,
    _device,
    _embed,
    _engine,
    _fields,
    _limits,
)
from hrqtok.cli.render import render_report
from hrqtok.errors import InputError, OptionError
from hrqtok.jsonsafe import dumps

OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                   ".ndjson": "jsonl", ".json": "jsonl", ".txt": "strings"}


def _output_format(out: str, fmt: Optional[OutputFormat]) -> str:
    """--format, else the suffix of --out; stdout and special targets (FIFOs, >(…)) without a
    known suffix get JSONL. An unknown suffix is refused rather than guessed."""
    from hrqtok.atomic import is_special
    from hrqtok.locations import suffix
    from hrqtok.targets import names_a_folder

    if out != "-" and names_a_folder(out):
        if fmt not in (None, OutputFormat.parquet):
            raise typer.BadParameter(f"{out} names a folder, which holds Parquet part files, "
                                     f"not {fmt.value}; name a file for {fmt.value}",
                                     param_hint="--format")
        return "parquet"
    if fmt is not None:
        return fmt.value
    ending = suffix(out)  # of a URI's path, not of its ?options
    if ending in OUTPUT_SUFFIXES:
        return OUTPUT_SUFFIXES[ending]
    if out == "-" or is_special(out):
        return "jsonl"
    known = ", ".join(sorted(OUTPUT_SUFFIXES))
    raise typer.BadParameter(f"cannot tell the format from {out!r} (known suffixes: {known}); "
                             "name it with --format", param_hint="--out")


def encode(
    items: ItemsArg = None,
    model: ModelOpt = Path("hrqtok-model"),
    out: Annotated[str, typer.Option(
        "--out", "-o", help="Output file, - for stdout, a FIFO, or a folder (DIR/) of Parquet "
                            "part files; either may be a URI (s3://…); never one of the "
                            "inputs.")] = "-",
    format: Annotated[Optional[OutputFormat], typer.Option(
        "--format", help="Output format (default: from --out's suffix; jsonl for stdout).")] = None,
    existing: Annotated[Optional[str], typer.Option(
        help="Earlier token table of this model (a file or a folder of parts, also at a URI): "
             "its ids keep their multitokens.")] = None,
    existing_other_model: Annotated[bool, typer.Option(
        "--existing-other-model", help="Accept an --existing table made by another model: its "
                                       "ids keep their multitokens, new items get this model's codes.")] = False,
    beam: Annotated[int, typer.Option(
        min=1, help="Keep this many code paths per item (beam search) instead of the nearest "
                    "code at each level; never reconstructs worse than greedy.")] = 1,
    id_field: IdOpt = None,
    text_field: TextOpt = None,
    embedding_field: EmbeddingOpt = None,
    input_format: InputFormatOpt = None,
    embedder: EmbedderOpt = None,
    embed_precision: PrecisionOpt = None,
    embed_backend: BackendOpt = None,
    device: DeviceOpt = "auto",
    engine: EngineOpt = Engine.local,
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
    max_collision_rate: MaxCollisionOpt = None,
    max_disambiguation: MaxDisambiguationOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Write multitokens: of the fitted items (no ITEMS), or of other items.

    Examples: hrqtok encode --out tokens.parquet;  hrqtok encode more.jsonl --out - | head;
    hrqtok encode items.jsonl --beam 8 --out tokens.parquet;
    hrqtok encode <(zcat items.jsonl.gz) --out tokens.parquet;
    hrqtok encode vectors/ --engine ray --ray-address auto --out tokens/
    """
    from hrqtok.catalogue import encode_catalogue
    from hrqtok.store.token_folders import check_replaceable
    from hrqtok.targets import check_output, names_a_folder

    if existing_other_model and existing is None:
        raise typer.BadParameter("needs --existing", param_hint="--existing-other-model")
    device = _device(device)
    ray = _engine(engine, ray_address, ray_workers)
    if ray is not None and items is None:
        raise typer.BadParameter("ray encodes ITEMS; the fitted items' table is the model's "
                                 "own (leave --engine out)", param_hint="--engine")
    with exit_on_errors():
        check_output(out, inputs=(items, existing), managed=(model,), folders=True, remote=True)
        if names_a_folder(out):
            check_replaceable(out)
    fmt = _output_format(out, format)
    if fmt == "parquet" and out == "-" and sys.stdout.isatty():
        raise typer.BadParameter("refusing to write Parquet to a terminal", param_hint="--out")
    with exit_on_errors():
        with progress_bars(quiet) as progress:
            report = encode_catalogue(
                model, items, out, fmt, fields=_fields(id_field, text_field, embedding_field),
                input_format=input_format.value if input_format else None,
                embed=_embed(embedder, embed_precision, embed_backend), existing=existing,
                existing_other_model=existing_other_model, beam=beam,
                limits=_limits(max_collision_rate, max_disambiguation), device=device,
                engine=ray, progress=progress)
    if not quiet and out != "-":
        err.print(f"wrote {report['items']} multitokens to {out} ({fmt})")


def decode(
    tokens: Annotated[Optional[list[str]], typer.Argument(
        help="One multitoken (12 40 7 0 or <a_12><b_40><c_7><d_0>), or several as "
             "12,40,7,0 3,1,4,0.", show_default=False)] = None,
    model: ModelOpt = Path("hrqtok-model"),
    input: Annotated[Optional[str], typer.Option(
        "--input", "-i", help="File of multitokens in any format encode writes (Parquet, "
                              "JSONL, CSV, strings, lines of integers); - is stdin.")] = None,
    table: Annotated[Optional[str], typer.Option(
        "--tokens", help="Token table of this model to look ids up in (a file or a folder of "
                         "parts, also at a URI; default: the model's).")] = None,
    vectors: Annotated[bool, typer.Option("--vectors", help="Add decoder reconstructions.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="JSONL output even for arguments.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Map multitokens back to item ids (null when no item has it).

    Examples: hrqtok decode 12 40 7 0;  hrqtok decode "<a_12><b_40><c_7><d_0>";
    hrqtok decode -i tokens.csv --vectors;  hrqtok encode --out - | hrqtok decode
    """
    from hrqtok.pipeline import decode_tokens
    from hrqtok.store.multitokens import parse_multitoken, read_multitokens

    if tokens and input is not None:
        raise typer.BadParameter("give multitokens as arguments or with --input, not both",
                                 param_hint="--input")
    with exit_on_errors():
        if tokens:
            groups = tokens if any("," in t for t in tokens) else [" ".join(tokens)]
            try:
                located = [(f"argument {i}", parse_multitoken(g, f"argument {i}"))
                           for i, g in enumerate(groups, start=1)]
            except InputError as e:
                raise OptionError("TOKENS", str(e)) from None
        elif input is not None or not sys.stdin.isatty():
            located = read_multitokens(input or "-")
        else:
            raise OptionError("TOKENS", "give multitokens as arguments, with --input, or on stdin")
        where, multitokens = [w for w, _ in located], [t for _, t in located]
        try:
            result = decode_tokens(model, multitokens, table=table, vectors=vectors, where=where)
        except InputError as e:
            if tokens:  # a wrong-length argument is a usage error
                raise OptionError("TOKENS", str(e)) from None
            raise
        as_json = json_out or vectors or not tokens
        emit([dumps(row) if as_json else (row["id"] if row["id"] is not None else "null")
              for row in result["results"]])
    if not quiet:
        for row in result["results"]:
            if row["id"] is None and len(result["results"]) == 1:
                err.print(f"no such item: {' '.join(map(str, row['tokens']))}")
        err.print(f"decoded {len(result['results'])} multitokens, {result['invalid']} invalid")


def inspect(
    items: ItemsArg = None,
    model: ModelOpt = Path("hrqtok-model"),
    table: Annotated[Optional[str], typer.Option(
        "--tokens", help="Report on this token table instead of the model's (a file or a "
                         "folder of parts, also at a URI).")] = None,
    id_field: IdOpt = None,
    text_field: TextOpt = None,
    embedding_field: EmbeddingOpt = None,
    input_format: InputFormatOpt = None,
    json_out: JsonOpt = False,
    plot: Annotated[Optional[str], typer.Option(
        help="Also draw the report as a figure here (PNG, or PDF/SVG by suffix): code usage, "
             "collision groups, training curves, latent space.", show_default=False)] = None,
    prefix: Annotated[Optional[str], typer.Option(
        help="List the items whose multitokens start with these tokens, e.g. 12 or 12,40 "
             "(with their texts when ITEMS is given).", show_default=False)] = None,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Report codebook usage, prefix tree, collisions, latent geometry and reconstruction.

    Examples: hrqtok inspect;  hrqtok inspect --json | jq .collisions;  hrqtok inspect new.jsonl
    """
    from hrqtok.catalogue import inspect_catalogue
    from hrqtok.targets import check_output

    device = _device(device)
    with exit_on_errors():
        if plot is not None:
            check_output(plot, option="--plot", inputs=(items, table), managed=(model,))
        with progress_bars(quiet) as progress:
            report = inspect_catalogue(
                model, items, fields=_fields(id_field, text_field, embedding_field),
                input_format=input_format.value if input_format else None,
                table=table, prefix=_prefix(prefix), plot=plot, device=device,
                progress=progress)
        if json_out:
            emit(dumps(report))
    if not json_out:
        render_report(report)


def _prefix(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        tokens = [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        tokens = []
    if not tokens or min(tokens) < 0:
        raise typer.BadParameter(f"expected tokens like 12 or 12,40, got {text!r}",
                                 param_hint="--prefix")
    return tokens
