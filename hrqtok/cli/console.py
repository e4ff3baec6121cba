"""What every hrqtok command shares on the terminal: the stderr console, progress bars (or
plain lines in a log), data on stdout that survives a closed pipe, and known errors turned
into one `Error:` line with exit code 1 (2 for options)."""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from hrqtok.config import MAX_SEED
from hrqtok.errors import HrqtokError
from hrqtok.sources.records import FORMATS

err = Console(stderr=True)

# --- options shared by several commands, declared once ---------------------------------------------
InputFormat = Enum("InputFormat", {f: f for f in FORMATS}, type=str)
ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Model directory.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summaries.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")]
InputFormatOpt = Annotated[Optional[InputFormat], typer.Option(
    help="Input format (default: from the file suffix; jsonl for stdin).")]
SeedOpt = Annotated[int, typer.Option(min=0, max=MAX_SEED,
                                      help="Same input and seed give the same bytes.")]
LOG_EVERY = 10.0  # seconds between plain progress lines when stderr is not a terminal


@contextmanager
def progress_bars(quiet: bool):
    """A progress callback drawing rich bars on stderr (nothing with --quiet). When stderr is a
    file or a pipe, bars cannot redraw: a plain line every LOG_EVERY seconds and at the end of
    each task stands in for them, so a long run in a log shows how far it got."""
    live = err.is_terminal
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=err,
                    disable=quiet or not live, transient=False)
    tasks: dict[str, int] = {}
    logged: dict[str, float] = {}

    def update(task: str, done: int, total: int, info: dict | None) -> None:
        name = "fit" if task in ("warm-up", "train", "burn-in") else task
        text = epoch_info(info) if info else ""
        if not live:
            now = time.monotonic()
            if not quiet and (done >= total or now - logged.get(name, -LOG_EVERY) >= LOG_EVERY):
                logged[name] = now
                click.echo(f"{task} {done}/{total}" + (f" · {text}" if text else ""), err=True)
            return
        if name not in tasks:
            tasks[name] = bars.add_task(name, total=total, info="")
        bars.update(tasks[name], completed=done, total=total, description=task, info=text)

    with bars:
        yield update


def epoch_info(row: dict) -> str:
    if "objective" in row:  # residual k-means
        text = f"level {row['level']} · objective {row['objective']:.4g}"
    elif "rank_loss" in row:  # WordNet mode
        text = f"loss {row['loss']:.3f} · {row['pairs_per_second']:,.0f} pairs/s"
        if "train_mean_rank" in row:
            text += f" · MR {row['train_mean_rank']:.2f} MAP {row['train_map']:.3f} (sample)"
        if "quantized_train_map" in row:
            text += (f" · tokens MR {row['quantized_train_mean_rank']:.2f} "
                     f"MAP {row['quantized_train_map']:.3f}")
    elif "reconstruction" in row:
        text = f"rec {row['reconstruction']:.4f}"
        if "temperature" in row:
            text += f" · τ {row['temperature']:.2f}"
    else:  # a downstream model's epoch
        text = f"loss {row['loss']:.3f}" if "loss" in row else ""
        if "validation" in row:
            text += f" · validation {row['validation']:.3f} (best {row['best']:.3f})"
    if "utilisation" in row:
        use = "/".join(f"{u:.0%}" for u in row["utilisation"])
        text += f" · used {use} · collisions {row['collision_rate']:.1%}"
    return text


def quiet_broken_pipe() -> None:
    """The reader of stdout went away (``hrqtok encode … | head -1``): stop quietly with exit 0,
    as head-friendly tools do, so ``set -o pipefail`` scripts see only the reader's status."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail
    except (OSError, ValueError):
        pass
    raise typer.Exit(0)


def emit(lines: str | list[str]) -> None:
    """Data on stdout, a line each, flushed; a reader that went away (``| head -1``) ends the
    command quietly with exit 0 (see ``quiet_broken_pipe``)."""
    try:
        sys.stdout.write("".join(f"{line}\n" for line in ([lines] if isinstance(lines, str) else lines)))
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_broken_pipe()


def _os_error_line(e: OSError) -> str:
    name = e.filename or ""
    what = {errno.ENOSPC: "the disk is full", errno.EROFS: "the filesystem is read-only",
            errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}.get(
        e.errno, e.strerror or str(e))
    return f"Error: {name}: {what}" if name else f"Error: {what}"


class _WarningLine(logging.Handler):
    """Library warnings (logger ``hrqtok``) as one `warning:` line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


def install_warning_lines() -> None:
    logger = logging.getLogger("hrqtok")
    if not any(isinstance(h, _WarningLine) for h in logger.handlers):
        logger.addHandler(_WarningLine())
        logger.propagate = False


@contextmanager
def exit_on_errors():
    """Known problems become one `Error:` line and exit 1 (2 for options); operating-system
    errors (a full or read-only disk) one line too; a closed stdout ends the command quietly."""
    install_warning_lines()
    try:
        yield
    except HrqtokError as e:
        click.echo(f"Error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    except BrokenPipeError:
        quiet_broken_pipe()
    except OSError as e:
        click.echo(_os_error_line(e), err=True)
        raise typer.Exit(1) from None
