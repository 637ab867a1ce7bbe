"""Finding and opening the two raw files of the UCI Census-Income (KDD) download, packed or not.

UCI serves ``census+income+kdd.zip`` (https://archive.ics.uci.edu/dataset/117/census+income+kdd).
It holds ``census.tar.gz``, which holds ``census-income.data`` (the training split) and
``census-income.test``: headerless text, one person a line. UCI's former directory
(``census-income-mld/``) also served each file gzipped: ``census-income.data.gz``,
``census-income.test.gz``. A user may have the zip, the tar.gz, the .gz files or the text files,
in ``DIR`` or ``DIR/CensusIncome/``; each file is read from the least packed form found, straight
out of the archives (streamed, never unpacked to disk).
"""

from __future__ import annotations

import contextlib
import gzip
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mtreclib.core.errors import DataError, UserError
from mtreclib.recipes.checked import CheckedStream

DOWNLOAD_PAGE = "https://archive.ics.uci.edu/dataset/117/census+income+kdd"
ZIP_NAME = "census+income+kdd.zip"
TAR_NAME = "census.tar.gz"
TRAIN_FILE = "census-income.data"
TEST_FILE = "census-income.test"

# What a damaged or cut-off archive raises while it is read; each becomes a one-line DataError.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile, tarfile.TarError, NotImplementedError)
_AGAIN = f"download it again from {DOWNLOAD_PAGE}"


def _kind(name: str) -> str:
    """How a file of this name is read: ``zip``, ``tar`` (gzipped tar), ``gz`` or ``text``."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if lower.endswith(".gz"):
        return "gz"
    return "text"


@dataclass(frozen=True)
class RawFile:
    """Where one raw file is.

    Attributes:
        file_name: ``census-income.data`` or ``census-income.test``.
        path: the file on disk: the text itself, its ``.gz``, the tar.gz or the zip holding it.
        members: inside ``path``, the members leading to the file, outermost first: ``()`` for a
            text or .gz file; ``("census-income.data",)`` inside the tar; ``("census.tar.gz",
            "census-income.data")`` inside the zip. A tar's member is named by its file name and
            found by it in any folder (also as ``<name>.gz``) when the tar is read.
    """

    file_name: str
    path: Path
    members: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """How error messages name it: the path through the archives to the file."""
        return " > ".join([str(self.path), *self.members])

    @contextlib.contextmanager
    def open(self) -> Iterator[tuple[BinaryIO, int | None]]:
        """The file's bytes as a stream, and their size where an archive records it (else None)."""
        with contextlib.ExitStack() as stack:
            stream: BinaryIO = stack.enter_context(open(self.path, "rb"))
            size: int | None = self.path.stat().st_size
            kind, where = _kind(self.path.name), str(self.path)
            try:
                for member in self.members:
                    if kind == "zip":
                        archive = stack.enter_context(zipfile.ZipFile(stream))
                        info = _zip_member(archive, member, where)
                        stream, size, found = stack.enter_context(archive.open(info)), info.file_size, info.filename
                    elif kind == "tar":
                        # Stream mode reads the tar front to back: no seeks, so it works inside a zip.
                        archive = stack.enter_context(tarfile.open(fileobj=stream, mode="r|*"))
                        info = _tar_member(archive, member, where)
                        stream, size, found = archive.extractfile(info), info.size, info.name
                    else:
                        raise DataError(where, f"is not an archive; expected {member} inside a .zip or .tar.gz")
                    kind, where = _kind(found), f"{where} > {member}"
                if kind == "gz":
                    stream, size = stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb")), None
                elif kind != "text":
                    raise DataError(where, f"expected the text file {self.file_name}, found an archive")
            except _ARCHIVE_ERRORS as error:
                raise DataError(where, f"cannot read the archive ({error}); is the download complete? {_AGAIN}") from None
            yield CheckedStream(stream, self.name, _ARCHIVE_ERRORS, _AGAIN), size


def _zip_member(archive: zipfile.ZipFile, name: str, where: str) -> zipfile.ZipInfo:
    """The member of ``archive`` whose file name is ``name`` (in any folder)."""
    for info in archive.infolist():
        if Path(info.filename).name == name and not info.filename.startswith("__MACOSX"):
            return info
    held = ", ".join(info.filename for info in archive.infolist()[:6]) or "nothing"
    raise DataError(where, f"holds no {name} (it holds {held})")


def _tar_member(archive: tarfile.TarFile, name: str, where: str) -> tarfile.TarInfo:
    """The next member of ``archive`` (stream mode) named ``name`` or ``name.gz``, in any folder."""
    held = []
    for info in archive:
        if info.isfile() and Path(info.name).name in (name, f"{name}.gz"):
            return info
        held.append(info.name)
    raise DataError(where, f"holds no {name} (it holds {', '.join(held[:6]) or 'nothing'})")


def find_raw_files(data_dir: str | Path, dataset: str) -> dict[str, RawFile]:
    """``census-income.data`` and ``census-income.test`` under ``data_dir``, by split (train, test).

    Each is looked for in ``data_dir`` and ``data_dir/<dataset>``, in this order: as text, as
    ``<file>.gz``, inside ``census.tar.gz``, inside ``census+income+kdd.zip``. A missing file is a
    ``UserError`` saying where it looked and where to download it.
    """
    data_dir = Path(data_dir)
    folders = [data_dir, data_dir / dataset]
    found = {}
    for split, file_name in (("train", TRAIN_FILE), ("test", TEST_FILE)):
        candidates = [folder / name for name in (file_name, f"{file_name}.gz", TAR_NAME, ZIP_NAME) for folder in folders]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise UserError(
                f"{file_name} not found (looked for {', '.join(str(p) for p in candidates)}); download {ZIP_NAME} "
                f"from {DOWNLOAD_PAGE} into {data_dir}/ (see docs/recipes/census.md)"
            )
        found[split] = RawFile(file_name, path, _members(path, file_name))
    return found


def _members(path: Path, file_name: str) -> tuple[str, ...]:
    """The members leading to ``file_name`` inside ``path`` (the zip's are listed now, a tar's when read)."""
    kind = _kind(path.name)
    if kind == "tar":
        return (file_name,)
    if kind != "zip":
        return ()
    try:
        with zipfile.ZipFile(path) as archive:
            names = [Path(n).name for n in archive.namelist() if not n.startswith("__MACOSX")]
    except (*_ARCHIVE_ERRORS, OSError) as error:
        raise DataError(path, f"cannot read the zip ({error}); is the download complete? {_AGAIN}") from None
    # UCI's zip holds the tar.gz; a zip holding the files themselves (gzipped or not) is read too.
    for name in (file_name, f"{file_name}.gz"):
        if name in names:
            return (name,)
    if TAR_NAME in names:
        return (TAR_NAME, file_name)
    raise DataError(path, f"holds no {TAR_NAME} nor {file_name} (it holds {', '.join(names[:6]) or 'nothing'})")
