"""Errors the CLI turns into one `Error:` line: exit 1 for data and artefacts, 2 for options."""


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of a library's exception message (its type when it has none), to quote
    inside a one-line error."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def _rebuilt(kind: type, args: tuple, state: dict) -> BaseException:
    error = kind.__new__(kind)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class HrqtokError(Exception):
    """Base class: a problem with the user's data or artefacts, not a bug."""

    exit_code = 1

    def __reduce__(self):  # Ray workers send errors back pickled; __init__ takes other args
        return _rebuilt, (type(self), self.args, self.__dict__)


class InputError(HrqtokError):
    """Bad input data. The message names the file, the line (or row) and the field."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line


class ArtifactError(HrqtokError):
    """A model directory or token table that is missing, damaged, or from another model or
    version."""


class OutputError(HrqtokError):
    """An output a store would not take while it was written (a remote store refused it or
    went away); the message says what of the old output is left."""


class OptionError(HrqtokError):
    """An option that cannot work (a write target that would destroy something, a value out of
    range), found before any work is done. Exit code 2, as for Typer's bad parameters."""

    exit_code = 2

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option
