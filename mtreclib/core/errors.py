"""Errors caused by the user's input, reported as one line without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the command line, configuration or data; the CLI prints it and exits with 2."""


class DataError(UserError):
    """A data file that does not have the expected layout or values.

    The message names the file, then the line (1-based, as an editor counts, header included;
    text files) or the row (1-based data row; Parquet files) and the column where known, then
    what was expected.
    """

    def __init__(self, path: object, message: str, *, line: int | None = None, column: str | None = None, row: int | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")
