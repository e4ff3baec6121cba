"""`hrqtok eval …`: thin Typer commands over hrqtok.evaluation, rich tables on stderr and the
report as JSON on stdout with --json."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.table import Table

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
from hrqtok.cli.options import DeviceOpt, _device
from hrqtok.config import MAX_SEED, NEXT_ITEM, Seq2SeqConfig
from hrqtok.evaluation.histories import MAX_EVENTS, MIN_EVENTS
from hrqtok.jsonsafe import dumps
from hrqtok.sources.interactions import FORMATS as INTERACTION_FORMATS
from hrqtok.sources.interactions import InteractionFields

eval_app = typer.Typer(help="Measure whether multitokens are good on downstream tasks.",
                       no_args_is_help=True)

# --- options shared by the eval commands, declared once -------------------------------------------
Baseline = Enum("Baseline", {"random": "random"}, type=str)
InteractionFormat = Enum("InteractionFormat", {f: f for f in INTERACTION_FORMATS}, type=str)
BaselineOpt = Annotated[Optional[Baseline], typer.Option(
    help="Score random multitokens of the same shape instead of the tokens.")]
CompareOpt = Annotated[bool, typer.Option(
    "--compare", help="Score the tokens and the random baseline side by side.")]
RunsOpt = Annotated[int, typer.Option(min=1, help="Seeds to average (mean ± std).")]
EvalSeedOpt = Annotated[int, typer.Option(min=0, max=MAX_SEED - 1000,
                                          help="First seed; runs use seed, seed + 1, ….")]
TokensOpt = Annotated[str, typer.Option(
    "--tokens", help="Token table to evaluate (Parquet: a file or a folder of parts, also at "
                     "a URI).")]
# the downstream transformer
EpochsOpt = Annotated[int, typer.Option(min=0, help="Training epochs of the transformer.")]
BatchOpt = Annotated[int, typer.Option(min=1)]
RateOpt = Annotated[float, typer.Option(min=1e-9, help="Adam rate.")]
WidthOpt = Annotated[int, typer.Option(min=1, help="Transformer width.")]
HeadsOpt = Annotated[int, typer.Option(min=1)]
LayersOpt = Annotated[int, typer.Option(min=1, help="Encoder layers, and as many decoder layers.")]
FeedforwardOpt = Annotated[int, typer.Option(min=1)]
DropoutOpt = Annotated[float, typer.Option(min=0.0, max=0.99)]
BeamOpt = Annotated[int, typer.Option(min=1, help="Beam width = the k of recall@k.")]


def _systems(baseline: Baseline | None, compare: bool) -> tuple[str, ...]:
    if baseline is not None and compare:
        raise typer.BadParameter("--compare already includes the baseline", param_hint="--baseline")
    return ("model", "random") if compare else ("random",) if baseline else ("model",)


def _seq2seq(*, layers: int, **settings) -> Seq2SeqConfig:
    try:
        return Seq2SeqConfig(encoder_layers=layers, decoder_layers=layers, **settings)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def _cell(row: dict, key: str) -> str:
    return f"{row[key]['mean']:.3f} ± {row[key]['std']:.3f}"


@eval_app.command("hypernyms")
def eval_hypernyms(
    model: ModelOpt = Path("hrqtok-model"),
    baseline: BaselineOpt = None,
    compare: CompareOpt = False,
    runs: RunsOpt = 1,
    epochs: EpochsOpt = Seq2SeqConfig.epochs,
    batch_size: BatchOpt = Seq2SeqConfig.batch_size,
    learning_rate: RateOpt = Seq2SeqConfig.learning_rate,
    d_model: WidthOpt = Seq2SeqConfig.d_model,
    heads: HeadsOpt = Seq2SeqConfig.heads,
    layers: LayersOpt = Seq2SeqConfig.encoder_layers,
    feedforward: FeedforwardOpt = Seq2SeqConfig.feedforward,
    dropout: DropoutOpt = Seq2SeqConfig.dropout,
    beam: BeamOpt = Seq2SeqConfig.beam,
    train_pairs: Annotated[Optional[int], typer.Option(
        min=1, help="Train on a sample of this many train pairs, drawn with the run's seed "
                    "(default: all).", show_default=False)] = None,
    test_pairs: Annotated[Optional[int], typer.Option(
        min=1, help="Score a sample of this many held-out pairs, drawn with the run's seed "
                    "(default: all).", show_default=False)] = None,
    seed: EvalSeedOpt = 0,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Hypernym generation (paper §4.1): train a seq2seq transformer from a noun's multitoken to
    its hypernyms' on a WordNet model's train pairs; report recall@BEAM on the held-out pairs.

    Examples: hrqtok eval hypernyms --model mammals;
    hrqtok eval hypernyms --model mammals --compare --runs 3 --json;
    hrqtok eval hypernyms --model nouns --train-pairs 100000 --test-pairs 5000
    """
    from hrqtok.evaluation.hypernyms import evaluate_hypernyms

    systems = _systems(baseline, compare)
    config = _seq2seq(d_model=d_model, heads=heads, layers=layers, feedforward=feedforward,
                      dropout=dropout, epochs=epochs, batch_size=batch_size,
                      learning_rate=learning_rate, beam=beam, seed=seed, device=_device(device))
    with exit_on_errors(), progress_bars(quiet) as progress:
        report = evaluate_hypernyms(model, config, systems=systems, runs=runs,
                                    train_pairs=train_pairs, test_pairs=test_pairs,
                                    progress=progress)
    if json_out:
        emit(dumps(report))
        return
    table = Table(title=f"hypernym generation, {report['geometry']} {report['levels']} × "
                        f"{report['codebook_size']} ({report['model']})")
    for column in ("tokens", "runs", f"recall@{beam}", "s.e.", "recall@1", f"rare@{beam}",
                   f"top-{beam} ref.", "held-out", "seconds"):
        table.add_column(column, justify="right")
    for system, row in report["results"].items():
        table.add_row(system, str(row["runs"]), _cell(row, f"recall@{beam}"),
                      f"{row[f'recall@{beam}_se']['mean']:.3f}", _cell(row, "recall@1"),
                      f"{row[f'rare_recall@{beam}']['mean']:.3f}",
                      f"{row[f'frequent_reference@{beam}']['mean']:.3f}",
                      f"{row['test_pairs']['mean']:.0f}", f"{row['seconds']['mean']:.1f}")
    err.print(table)
    err.print(f"s.e.: standard error of recall@{beam} over the held-out pairs (clustered by "
              f"noun). rare@{beam}: recall@{beam} of the pairs whose hypernym is not one of the "
              f"{beam} most frequent in the train pairs; top-{beam} ref.: recall@{beam} of "
              f"answering every noun with those {beam}. Means over runs.")


@eval_app.command("next-item")
def eval_next_item(
    tokens: TokensOpt,
    interactions: Annotated[Optional[str], typer.Option(
        help="Interactions (user, item, timestamp) as TSV, CSV or Parquet.")] = None,
    movielens_100k: Annotated[bool, typer.Option(
        "--movielens-100k", help="Use MovieLens-100k from the installed recbole package.")] = False,
    user_field: Annotated[str, typer.Option(help="Column holding user ids.")] = "user_id",
    item_field: Annotated[str, typer.Option(help="Column holding item ids (the tokens' ids).")] = "item_id",
    time_field: Annotated[str, typer.Option(help="Column holding timestamps (numbers or ISO 8601).")] = "timestamp",
    interactions_format: Annotated[Optional[InteractionFormat], typer.Option(
        help="Default: from the suffix (.inter is tsv).")] = None,
    min_events: Annotated[int, typer.Option(min=3, help="Users with fewer interactions are left out.")] = MIN_EVENTS,
    max_events: Annotated[int, typer.Option(min=3, help="Each user's most recent interactions kept.")] = MAX_EVENTS,
    validate_every: Annotated[int, typer.Option(min=1, help="Epochs between validation scores.")] = 1,
    baseline: BaselineOpt = None,
    compare: CompareOpt = False,
    runs: RunsOpt = 1,
    epochs: EpochsOpt = NEXT_ITEM.epochs,
    batch_size: BatchOpt = NEXT_ITEM.batch_size,
    learning_rate: RateOpt = NEXT_ITEM.learning_rate,
    d_model: WidthOpt = NEXT_ITEM.d_model,
    heads: HeadsOpt = NEXT_ITEM.heads,
    layers: LayersOpt = NEXT_ITEM.encoder_layers,
    feedforward: FeedforwardOpt = NEXT_ITEM.feedforward,
    dropout: DropoutOpt = NEXT_ITEM.dropout,
    beam: Annotated[int, typer.Option(min=10, help="Beam width (metrics are @5 and @10).")] = NEXT_ITEM.beam,
    seed: EvalSeedOpt = 0,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Next-item generative retrieval (paper §4.2): a transformer reads the multitokens of a
    user's last items and generates the next one's, restricted to real items; Recall@5/10 and
    NDCG@5/10 on each user's last item, with the weights that scored best on the one before.

    Examples: hrqtok eval next-item --tokens ml-tokens.parquet --movielens-100k --compare;
    hrqtok eval next-item --tokens tokens.parquet --interactions ratings.tsv --json
    """
    from hrqtok.evaluation.next_item import evaluate_next_item
    from hrqtok.sources.interactions import read_interactions
    from hrqtok.sources.movielens import FIELDS, interactions_path

    systems = _systems(baseline, compare)
    if (interactions is None) == (not movielens_100k):
        raise typer.BadParameter("give either --interactions FILE or --movielens-100k",
                                 param_hint="--interactions")
    if max_events < min_events:
        raise typer.BadParameter(f"must be >= --min-events ({min_events})", param_hint="--max-events")
    config = _seq2seq(d_model=d_model, heads=heads, layers=layers, feedforward=feedforward,
                      dropout=dropout, epochs=epochs, batch_size=batch_size,
                      learning_rate=learning_rate, beam=beam, seed=seed, device=_device(device))
    with exit_on_errors():
        if movielens_100k:
            events = read_interactions(interactions_path(), FIELDS, fmt="tsv")
        else:
            fields = InteractionFields(user_field, item_field, time_field)
            events = read_interactions(interactions, fields,
                                       fmt=interactions_format.value if interactions_format else None)
        with progress_bars(quiet) as progress:
            report = evaluate_next_item(str(tokens), events, config, min_events=min_events,
                                        max_events=max_events, validate_every=validate_every,
                                        systems=systems, runs=runs, progress=progress)
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)  # one line each, never wrapped
    if json_out:
        emit(dumps(report))
        return
    data = report["data"]
    table = Table(title=f"next-item retrieval, {data['kept_users']} users, {report['items']} items "
                        f"({report['tokens']})")
    metrics = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
    for column in ("tokens", "runs", *metrics, "validation recall@10", "best epoch", "seconds"):
        table.add_column(column, justify="right")
    for system, row in report["results"].items():
        table.add_row(system, str(row["runs"]), *(_cell(row, m) for m in metrics),
                      _cell(row, "validation_recall@10"), f"{row['best_epoch']['mean']:.0f}",
                      f"{row['seconds']['mean']:.0f}")
    err.print(table)


@eval_app.command("taxonomy")
def eval_taxonomy(
    tokens: TokensOpt,
    items: Annotated[str, typer.Option("--items", help="Items with category paths (JSONL, Parquet or CSV).")],
    labels_field: Annotated[str, typer.Option(
        help="Field holding the category path: a list, or a string like 'A > B > C'.")] = "path",
    id_field: Annotated[str, typer.Option(help="Field holding item ids.")] = "id",
    input_format: InputFormatOpt = None,
    baseline: BaselineOpt = None,
    compare: CompareOpt = False,
    runs: RunsOpt = 1,
    pairs: Annotated[int, typer.Option(min=1, help="Item pairs sampled for the rank correlation.")] = 100_000,
    seed: EvalSeedOpt = 0,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Taxonomy agreement: per token level, NMI and purity between token prefixes and the items'
    categories at that depth, and the rank correlation of shared-prefix length with shared
    category depth over sampled pairs.

    Examples: hrqtok eval taxonomy --tokens demo-output/tokens.parquet --items data/wordnet_glosses.jsonl --compare
    """
    from hrqtok.evaluation.taxonomy import evaluate_taxonomy

    systems = _systems(baseline, compare)
    with exit_on_errors():
        report = evaluate_taxonomy(str(tokens), items, id_field=id_field, labels_field=labels_field,
                                   fmt=input_format.value if input_format else None,
                                   systems=systems, runs=runs, seed=seed, pairs=pairs)
    if json_out or quiet:
        if json_out:
            emit(dumps(report))
        return
    rendered = Table(title=f"taxonomy agreement, {report['items']} items, category depth up to "
                           f"{report['category_depth']['max']} ({report['tokens']})")
    rendered.add_column("metric (level = tokens of the prefix)")
    for system in report["results"]:
        rendered.add_column(system, justify="right")
    first = next(iter(report["results"].values()))
    for key in (k for k in first if k != "runs"):
        rendered.add_row(key.replace("_", " level ") if key != "rank_correlation" else
                         "rank correlation (shared prefix vs shared depth)",
                         *(_cell(row, key) for row in report["results"].values()))
    err.print(rendered)
