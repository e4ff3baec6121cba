"""The `hrqtok` command line: the app (``commands``), thin Typer commands over the library
(``fit``, ``tokens``, ``eval``), shared options (``options``), rendering (``render``) and the
progress bars and error lines (``console``). Nothing outside this package imports typer or rich."""

from hrqtok.cli.commands import app, main

__all__ = ["app", "main"]
