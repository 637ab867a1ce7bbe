"""A stream out of an archive whose read errors (truncation, corruption) become one-line errors.

Every recipe reads its raw files as members of the publisher's archive (zip, tar.gz, gzip); a
damaged download shows only once its member is read, deep inside the parsing. Wrapping the
member's stream turns that into one line naming the member and what to do.
"""

from __future__ import annotations

from typing import BinaryIO

from mtreclib.core.errors import DataError


class CheckedStream:
    """``stream``'s reads; an exception of ``errors`` becomes ``DataError(name, "the KIND is corrupt
    or truncated (ERROR); HINT")``."""

    def __init__(self, stream: BinaryIO, name: str, errors: tuple[type[BaseException], ...], hint: str, kind: str = "archive"):
        self._stream = stream
        self._name = name
        self._errors = errors
        self._hint = hint
        self._kind = kind

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except self._errors as error:
            raise self._error(error) from None

    def readline(self, size: int = -1) -> bytes:
        try:
            return self._stream.readline(size)
        except self._errors as error:
            raise self._error(error) from None

    def _error(self, error: BaseException) -> DataError:
        return DataError(self._name, f"the {self._kind} is corrupt or truncated ({error}); {self._hint}")
