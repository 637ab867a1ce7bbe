"""Text outputs written whole or not at all, and JSON inputs read with errors that name the file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from mtreclib.core.atomic import atomic_output
from mtreclib.core.errors import DataError


def file_stem(name: str) -> str:
    """A dataset's or study's name made safe as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


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
