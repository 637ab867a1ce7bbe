"""The database a study lives in: Optuna's RDB storage, opened (and reached) before any trial runs.

One URL names it: ``sqlite:///runs/tune.db`` for processes on one machine, ``postgresql://`` or
``mysql://`` (with their SQLAlchemy drivers installed) for workers on several machines. Every
finished trial is committed as it ends, so a worker that is killed loses only the trial it was
running: its heartbeat stops, and the next trial any worker starts marks it failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtreclib.core.errors import UserError
from mtreclib.tuning.available import require_optuna

# A running trial writes a heartbeat this often (seconds); one silent for GRACE_SECONDS is a
# killed worker's, and is marked failed.
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
# SQLite lets one process write at a time: the others wait this long for the lock.
SQLITE_WAIT_SECONDS = 120


def shown(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given (it has no password to hide)
        return url


def storage_url(text: str) -> str:
    """A database URL, or the path of an SQLite file (``t.db``) as its URL."""
    if "://" in text:
        return text
    return f"sqlite:///{text}"


def _sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (None for another database, or SQLite in memory)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def open_storage(url: str, *, create: bool = True, flag: str = "--storage") -> Any:
    """Optuna's ``RDBStorage`` at ``url``, connected; a one-line ``UserError`` naming ``flag`` when it cannot be reached.

    ``create``: for SQLite, make the file's folder (a new study); otherwise the file must exist.
    """
    optuna = require_optuna()
    file = _sqlite_file(url)
    if file is not None:
        if not create and not file.is_file():
            raise UserError(f"{flag} {url}: no such database file ({file})")
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"{flag} {url}: cannot create the folder {file.parent} ({error.strerror})") from None
    engine_kwargs = {"connect_args": {"timeout": SQLITE_WAIT_SECONDS}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
        )
    except Exception as error:  # noqa: BLE001 - SQLAlchemy's many errors (bad URL, missing driver, no server) are one user error
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{flag} {shown(url)}: cannot open the study database ({type(error).__name__}: {reason})") from None
