"""Errors the CLI turns into one-line messages and exit code 1."""


class HrqtokError(Exception):
    """Base class: a problem with the user's data or artefacts, not a bug."""


class InputError(HrqtokError):
    """Bad input data. The message names the file, the line (or row) and the field."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line


class ArtifactError(HrqtokError):
    """A model directory or token table that is missing, incomplete or from another version."""
