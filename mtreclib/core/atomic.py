"""Outputs written whole or not at all (a temporary name beside the target, renamed over it on
success), output paths checked before the work that fills them, and a write that fails anyway
reported as one line naming the path."""

from __future__ import annotations

import errno
import json
import os
import tempfile
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
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    with write_errors(path, temporary):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield temporary
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


# What a write can meet on a path that looked writable: root on a read-only or special file
# system, an ACL, a full disk or quota, a folder removed or locked during the run.
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST})


def write_failure(error: BaseException) -> OSError | None:
    """The OSError behind ``error`` (itself, or what it was raised from) that a write can meet, or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in WRITE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def write_errors(path: str | os.PathLike, *written: str | os.PathLike, flag: str | None = None) -> Iterator[None]:
    """Turn an OSError of a write to ``path`` (or into it, for a folder, or to one of ``written``)
    into one line naming ``path`` (and ``flag``): ``cannot write out/results.json: Permission denied``.

    Errors about other files, and errors no write meets, pass unchanged.
    """
    try:
        yield
    except Exception as error:  # exporters and writers wrap the OSError in their own types
        found = write_error(error, path, *written, flag=flag)
        if found is None:
            raise
        raise found from None


def write_error(error: BaseException, path: str | os.PathLike, *written: str | os.PathLike, flag: str | None = None) -> UserError | None:
    """The one-line error for ``error`` when it is a failed write to ``path`` (see ``write_errors``), else None."""
    failure = write_failure(error)
    if failure is None or not _concerns(failure, [Path(p) for p in (path, *written)]):
        return None
    name = f"{flag} {path}" if flag else str(path)
    return UserError(f"cannot write {name}: {failure.strerror or failure}")


def _concerns(error: OSError, targets: list[Path]) -> bool:
    """Whether ``error`` is about one of ``targets``, a file inside one, or a folder above one;
    an error without a file name (a full disk) is taken to be the write's."""
    if error.filename is None:
        return True
    where = Path(os.fsdecode(error.filename)).absolute()
    for target in (t.absolute() for t in targets):
        if where == target or target in where.parents or where in target.parents:
            return True
    return False


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
            _probe(part, path, flag)
            return


def _probe(folder: Path, path: Path, flag: str) -> None:
    error = write_probe(folder)
    if error is not None:
        raise UserError(f"{flag} {path}: cannot write in {folder} ({error.strerror or error})")


def write_probe(folder: str | os.PathLike) -> OSError | None:
    """Create and remove a file in the existing folder ``folder``; the error if that fails, else None.

    Permission bits (``os.access``) are not the whole story (root on a read-only or special file
    system, ACLs, a full disk): a write is.
    """
    try:
        handle, name = tempfile.mkstemp(prefix=".mtrec-probe-", dir=folder)
    except OSError as error:
        return error
    os.close(handle)
    os.unlink(name)
    return None
