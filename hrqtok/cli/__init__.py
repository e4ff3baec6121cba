"""The `hrqtok` command line: thin Typer commands over the library (``commands``, ``eval``),
their rendering (``render``) and the shared options, progress bars and error lines
(``console``). Nothing outside this package imports typer or rich."""

from hrqtok.cli.commands import app, main

__all__ = ["app", "main"]
