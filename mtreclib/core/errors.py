"""Errors caused by the user's input, reported as one line without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the candidate closest to a mistyped ``word``, or ``""`` when none is close.

    ``difflib``'s ratio with its usual cutoff (0.6): ``pleh`` finds ``ple``, ``categoricals`` finds
    ``categorical``, ``--expert-nm`` finds ``--expert-num``; an unrelated word finds nothing.
    """
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {found[0]}?)" if found else ""
