"""Outputs written whole or not at all, and JSON inputs read with errors that name the file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtreclib.errors import DataError


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A reader (or a resumed benchmark) never sees half a file: either the old one, or the new one.
    The temporary name keeps the suffix, so tools that infer a format from it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def read_json(path: Path) -> Any:
    """Parse the JSON file ``path``; a broken file is a ``DataError`` naming its line and column."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON: {error.msg}", line=error.lineno, column=str(error.colno)) from None
    except UnicodeDecodeError:
        raise DataError(path, "not a UTF-8 text file; expected a run's JSON") from None
