"""hrqtok command line: thin Typer commands over hrqtok.pipeline, rich output on stderr.

stdout carries data only. Bad options exit 2, bad data exits 1, each with one `Error:` line.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from hrqtok import __version__
from hrqtok.cli.console import (
    InputFormatOpt,
    JsonOpt,
    ModelOpt,
    QuietOpt,
    SeedOpt,
    emit,
    err,
    exit_on_errors,
    progress_bars,
)
from hrqtok.cli.eval import eval_app
from hrqtok.cli.render import fit_summary, render_report
from hrqtok.config import (
    CENTROIDS,
    GEOMETRIES,
    MAX_CODEBOOK_SIZE,
    MAX_CURVATURE,
    MAX_LEVELS,
    HierarchyTrainConfig,
    TrainConfig,
)
from hrqtok.errors import InputError, OptionError
from hrqtok.fit.options import MODE_DEFAULTS, FitOptions
from hrqtok.jsonsafe import dumps
from hrqtok.quantize.registry import QUANTIZERS, fit_help
from hrqtok.sources.embedder import PRECISIONS
from hrqtok.sources.items import ItemFields
from hrqtok.sources.packaged import DEFAULT_EMBEDDER

app = typer.Typer(
    help="Hierarchical multitokens (semantic IDs) with Hyperbolic Residual Quantization.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

Geometry = Enum("Geometry", {g: g for g in GEOMETRIES}, type=str)
Quantizer = Enum("Quantizer", {q: q for q in QUANTIZERS}, type=str)
Centroid = Enum("Centroid", {c: c for c in CENTROIDS}, type=str)
OutputFormat = Enum("OutputFormat", {f: f for f in ("parquet", "jsonl", "csv", "strings")}, type=str)
Precision = Enum("Precision", {p: p for p in PRECISIONS}, type=str)

# --- options shared by several commands, declared once ---------------------------------------------
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


@app.command()
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
    codebook_size: Annotated[int, typer.Option(min=2, max=MAX_CODEBOOK_SIZE, help="Codes per level (s).")] = 256,
    latent_dim: Annotated[Optional[int], typer.Option(
        min=1, help=_mode_help("latent_dim", "Latent dimension (h)."), show_default=False)] = None,
    hidden_dims: Annotated[Optional[str], typer.Option(
        help="Encoder hidden sizes; the decoder mirrors them [default: 512,256,128].",
        show_default=False)] = None,
    curvature: Annotated[float, typer.Option(
        min=1e-6, max=MAX_CURVATURE, help="Curvature c of the ball, below 100.")] = 1.0,
    commitment: Annotated[float, typer.Option(min=0.0, help="Commitment weight alpha.")] = 0.25,
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
        min=0, help="With --wordnet: epochs at a low rate before the codebooks start.")] = HierarchyTrainConfig.burn_in_epochs,
    eval_every: Annotated[int, typer.Option(
        min=0, help="With --wordnet: epochs between MR/MAP checks on a sample (0: end only).")] = HierarchyTrainConfig.eval_every,
    quantize_weight: Annotated[float, typer.Option(
        min=0.0, help="With --wordnet: weight of the (H)RQ loss against the ranking loss.")] = HierarchyTrainConfig.quantize_weight,
    seed: SeedOpt = 0,
    id_field: IdOpt = None,
    text_field: TextOpt = None,
    embedding_field: EmbeddingOpt = None,
    input_format: InputFormatOpt = None,
    embedder: EmbedderOpt = None,
    embed_precision: PrecisionOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train an (H)RQ-VAE tokenizer on items, or on WordNet nouns with --wordnet, and store it
    with its token table.

    Examples: hrqtok fit data/wordnet_glosses.jsonl --model my-model;
    hrqtok fit --wordnet --root mammal.n.01 --model mammals;
    hrqtok fit data/wordnet_glosses.jsonl --model my-model --force  (replace my-model)
    """
    if wordnet and items is not None:
        raise typer.BadParameter("give either ITEMS or --wordnet, not both", param_hint="ITEMS")
    if items is None and not wordnet:
        raise typer.BadParameter("give an items file, - for stdin, or --wordnet", param_hint="ITEMS")
    from hrqtok.pipeline import EmbedSettings, fit_items, fit_wordnet

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
            seed=seed, train=train)
        options.refuse_inapplicable(given)
        with progress_bars(quiet) as progress:
            if wordnet:
                metrics = fit_wordnet(model_dir=model, options=options, root=root, force=force,
                                      progress=progress)
            else:
                metrics = fit_items(
                    items, model_dir=model, options=options,
                    fields=_fields(id_field, text_field, embedding_field) or ItemFields(),
                    fmt=input_format.value if input_format else None,
                    embed=_embed(embedder, embed_precision) or EmbedSettings(),
                    force=force, progress=progress)
        if json_out:
            emit(dumps(metrics))
    if not quiet:
        fit_summary(metrics, str(model))


# fit's training options, by parameter name: only those given reach the train config
TRAIN_OPTIONS = ("epochs", "warmup_epochs", "batch_size", "learning_rate", "patience",
                 "kmeans_iters", "centroid", "tau_max", "tau_min", "tau_decay",
                 "validation_fraction", "test_fraction", "negatives", "burn_in_epochs",
                 "eval_every", "quantize_weight")


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


OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                   ".ndjson": "jsonl", ".json": "jsonl", ".txt": "strings"}


def _output_format(out: str, fmt: Optional[OutputFormat]) -> str:
    """--format, else the suffix of --out; stdout and special targets (FIFOs, >(…)) without a
    known suffix get JSONL. An unknown suffix is refused rather than guessed."""
    from hrqtok.atomic import is_special

    if fmt is not None:
        return fmt.value
    suffix = Path(out).suffix.lower()
    if suffix in OUTPUT_SUFFIXES:
        return OUTPUT_SUFFIXES[suffix]
    if out == "-" or is_special(out):
        return "jsonl"
    known = ", ".join(sorted(OUTPUT_SUFFIXES))
    raise typer.BadParameter(f"cannot tell the format from {out!r} (known suffixes: {known}); "
                             "name it with --format", param_hint="--out")


@app.command()
def encode(
    items: ItemsArg = None,
    model: ModelOpt = Path("hrqtok-model"),
    out: Annotated[str, typer.Option(
        "--out", "-o", help="Output file, - for stdout, or a FIFO; never one of the inputs.")] = "-",
    format: Annotated[Optional[OutputFormat], typer.Option(
        "--format", help="Output format [default: from --out's suffix; jsonl for stdout].")] = None,
    existing: Annotated[Optional[Path], typer.Option(
        help="Earlier token table of this model: its ids keep their multitokens.")] = None,
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
    quiet: QuietOpt = False,
) -> None:
    """Write multitokens: of the fitted items (no ITEMS), or of other items.

    Examples: hrqtok encode --out tokens.parquet;  hrqtok encode more.jsonl --out - | head;
    hrqtok encode items.jsonl --beam 8 --out tokens.parquet;
    hrqtok encode <(zcat items.jsonl.gz) --out tokens.parquet
    """
    from hrqtok.pipeline import encode_items
    from hrqtok.store.tables import write_table
    from hrqtok.targets import check_output

    if existing_other_model and existing is None:
        raise typer.BadParameter("needs --existing", param_hint="--existing-other-model")
    with exit_on_errors():
        check_output(out, inputs=(items, existing), managed=(model,))
    fmt = _output_format(out, format)
    if fmt == "parquet" and out == "-" and sys.stdout.isatty():
        raise typer.BadParameter("refusing to write Parquet to a terminal", param_hint="--out")
    with exit_on_errors():
        with progress_bars(quiet) as progress:
            table = encode_items(
                model, items, fields=_fields(id_field, text_field, embedding_field),
                fmt=input_format.value if input_format else None,
                embed=_embed(embedder, embed_precision), existing=existing,
                existing_other_model=existing_other_model, beam=beam, progress=progress)
        write_table(table, out, fmt)
    if not quiet and out != "-":
        err.print(f"wrote {len(table)} multitokens to {out} ({fmt})")


@app.command()
def decode(
    tokens: Annotated[Optional[list[str]], typer.Argument(
        help="One multitoken (12 40 7 0 or <a_12><b_40><c_7><d_0>), or several as "
             "12,40,7,0 3,1,4,0.", show_default=False)] = None,
    model: ModelOpt = Path("hrqtok-model"),
    input: Annotated[Optional[str], typer.Option(
        "--input", "-i", help="File of multitokens in any format encode writes (Parquet, "
                              "JSONL, CSV, strings, lines of integers); - is stdin.")] = None,
    table: Annotated[Optional[Path], typer.Option(
        "--tokens", help="Token table of this model to look ids up in [default: the model's].")] = None,
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


@app.command()
def inspect(
    items: ItemsArg = None,
    model: ModelOpt = Path("hrqtok-model"),
    table: Annotated[Optional[Path], typer.Option(
        "--tokens", help="Report on this token table instead of the model's.")] = None,
    id_field: IdOpt = None,
    text_field: TextOpt = None,
    embedding_field: EmbeddingOpt = None,
    input_format: InputFormatOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Report codebook usage, prefix tree, collisions, latent geometry and reconstruction.

    Examples: hrqtok inspect;  hrqtok inspect --json | jq .collisions;  hrqtok inspect new.jsonl
    """
    from hrqtok.pipeline import inspect_model

    with exit_on_errors():
        with progress_bars(quiet) as progress:
            report = inspect_model(model, items, fields=_fields(id_field, text_field, embedding_field),
                                   fmt=input_format.value if input_format else None,
                                   table=table, progress=progress)
        if json_out:
            emit(dumps(report))
    if not json_out:
        render_report(report)


app.add_typer(eval_app, name="eval")
export_app = typer.Typer(help="Write datasets that come inside installed packages as plain files.",
                         no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("movielens-100k")
def export_movielens(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the two files into.")],
    quiet: QuietOpt = False,
) -> None:
    """MovieLens-100k from the installed recbole package as OUT/items.jsonl (id, title, year,
    genres, text) and OUT/interactions.tsv (user_id, item_id, rating, timestamp). GroupLens'
    terms forbid redistributing MovieLens: keep these files to yourself.

    Example: hrqtok export movielens-100k --out ml-100k
    """
    from hrqtok.sources.movielens import export_movielens_100k
    from hrqtok.targets import check_output

    with exit_on_errors():
        for name in ("items.jsonl", "interactions.tsv"):
            check_output(out / name)
        written = export_movielens_100k(out)
    if not quiet:
        err.print(f"wrote {written['items']} movies and {written['interactions']} interactions: "
                  f"{' and '.join(written['paths'])}")


def _version(value: bool) -> None:
    if value:
        print(f"hrqtok {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version.")] = False) -> None:
    """Hierarchical multitokens (semantic IDs) with Hyperbolic Residual Quantization."""


def main() -> None:
    """The `hrqtok` command: every failure is one `Error:` line (usage errors included, exit
    2). A closed stdout ends a command quietly with exit 0: data goes out through ``emit``
    and ``write_table`` inside ``exit_on_errors``."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="hrqtok", standalone_mode=False)
    except typer.Abort:
        click.echo("Error: aborted", err=True)
        code = 130
    except typer.TyperException as e:  # Typer's usage errors (exit 2) and other click errors
        context = getattr(e, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        message = " ".join(e.format_message().split()) if hasattr(e, "format_message") else str(e)
        if message:  # an empty message: the help was shown (a command given no arguments)
            click.echo(f"Error: {message}{hint}", err=True)
        code = getattr(e, "exit_code", 1)
    sys.exit(code if isinstance(code, int) else 0)
