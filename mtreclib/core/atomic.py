"""Outputs written whole or not at all (a temporary name beside the target, renamed over it on
success), and output paths checked before the work that fills them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from mtreclib.core.errors import UserError


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    A reader (a resumed benchmark, a second process) sees either the old file or the new one,
    never half of one; on an exception the temporary file is removed and ``path`` is untouched.
    The temporary name is hidden, carries the process id (two writers never share it) and keeps
    the suffix, so tools that infer a format from it (matplotlib) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """``atomic_output`` for files that belong together (a model and its encoders): a temporary
    path for each, all renamed over their paths once every one was written, none on an exception
    (renamed last to first: a rename that fails leaves the paths before it untouched)."""
    with ExitStack() as stack:
        yield [stack.enter_context(atomic_output(path)) for path in paths]


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")


def check_writable(path: str | os.PathLike, flag: str, *, folder: bool = False) -> None:
    """Refuse, before any long work, an output path that could not be written.

    ``folder``: ``path`` is a folder to create or write into; otherwise a file. The message
    names the flag (``--results out/x.json: out is a file, not a folder``).
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; expected a file name")
    for part in [path, *path.parents] if folder else path.parents:
        if part.exists():
            if not part.is_dir():
                raise UserError(f"{flag} {path}: {part} is a file, not a folder")
            if not os.access(part, os.W_OK):
                raise UserError(f"{flag} {path}: no permission to write in {part}")
            return
