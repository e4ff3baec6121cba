"""hrqtok command line: the Typer app, assembled from thin commands over the library
(``fit``, ``tokens``, ``eval``), rich output on stderr.

stdout carries data only. Bad options exit 2, bad data exits 1, each with one `Error:` line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from hrqtok import __version__
from hrqtok.cli.console import QuietOpt, err, exit_on_errors
from hrqtok.cli.embed import embed
from hrqtok.cli.eval import eval_app
from hrqtok.cli.fit import fit
from hrqtok.cli.tokens import decode, encode, inspect

app = typer.Typer(
    help="Hierarchical multitokens (semantic IDs) with Hyperbolic Residual Quantization.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
for command in (embed, fit, encode, decode, inspect):
    app.command()(command)
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
    from hrqtok.targets import check_output, refuse_uri

    with exit_on_errors():
        refuse_uri(out, "--out")
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
