"""A recipe's raw files: found in the places a download may leave them, opened straight out of its archives.

Publishers serve their files packed (zip, tar.gz, gzip, archives inside archives) and users
unpack them or not, in ``DIR`` or ``DIR/NAME/``. A ``RawFile`` is one file wherever it is: a
path on disk and the chain of archive members leading to it, outermost first
(``census+income+kdd.zip > census.tar.gz > census-income.data``). ``locate`` takes the first of
the places a recipe lists that exists; opening streams the file out of its archives, never
unpacking to disk (a tar is read front to back in stream mode, so it works inside a zip or a
gzip). Whatever goes wrong is one line naming the file through its archives and what to do:
a missing download is a ``UserError`` saying where it looked and where to get it; a damaged one
a ``DataError`` ("the zip is corrupt or truncated"), also when the damage shows only deep
inside the parsing, because reads go through ``CheckedStream``.
"""

from __future__ import annotations

import contextlib
import gzip
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mtreclib.core.errors import DataError, UserError

# What a damaged or cut-off archive raises while it is read.
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile, tarfile.TarError, NotImplementedError,
)  # fmt: skip


def kind_of(name: str) -> str:
    """How a file of this name is read: ``zip``, ``tar`` (plain or gzipped), ``gz`` or ``text``."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if lower.endswith(".gz"):
        return "gz"
    return "text"


def _word(path: Path) -> str:
    """What messages call the outermost file: the zip, or the archive."""
    return "zip" if kind_of(path.name) == "zip" else "archive"


class CheckedStream:
    """``stream``'s reads; an exception of ``errors`` becomes ``DataError(name, "the KIND is corrupt or
    truncated (ERROR); HINT")``, so that damage found deep inside the parsing is still one line."""

    def __init__(self, stream: BinaryIO, name: str, hint: str, kind: str = "archive", errors: tuple[type[BaseException], ...] = ARCHIVE_ERRORS):
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


@dataclass(frozen=True)
class OpenFile:
    """A raw file being read.

    Attributes:
        name: how messages name it: its path, through the archives (``a.zip > b.csv``).
        file_name: its own name, for progress bars (``b.csv``).
        stream: its bytes.
        size: its uncompressed size in bytes, where known (a gzip does not record it).
    """

    name: str
    file_name: str
    stream: BinaryIO
    size: int | None


def holds_no(where: object, wanted: Sequence[str], held: Sequence[str], hint: str = "") -> DataError:
    """``WHERE: holds no A nor B (it holds X, Y, ...); HINT``."""
    shown = ", ".join(held[:6]) or "nothing"
    return DataError(where, f"holds no {' nor '.join(wanted)} (it holds {shown})" + (f"; {hint}" if hint else ""))


def _member_of_zip(archive: zipfile.ZipFile, name: str, where: str, hint: str) -> zipfile.ZipInfo:
    """The member of ``archive`` whose file name is ``name``, in any folder (macOS's ``__MACOSX`` copies aside)."""
    for info in archive.infolist():
        if Path(info.filename).name == name and not info.filename.startswith("__MACOSX"):
            return info
    raise holds_no(where, [name], [info.filename for info in archive.infolist()], hint)


def _member_of_tar(archive: tarfile.TarFile, name: str, where: str, hint: str) -> tarfile.TarInfo:
    """The next member of ``archive`` (stream mode) named ``name`` or ``name.gz``, in any folder."""
    held = []
    for info in archive:
        if info.isfile() and Path(info.name).name in (name, f"{name}.gz"):
            return info
        held.append(info.name)
    raise holds_no(where, [name], held, hint)


@dataclass(frozen=True)
class RawFile:
    """Where one raw file is.

    Attributes:
        file_name: the file's own name (``census-income.data``, ``nl_item_train.csv``).
        path: the file on disk: the file itself, its ``.gz``, or the archive holding it.
        members: inside ``path``, the members leading to the file, outermost first: ``()`` for the
            file or its ``.gz``; each is found by its file name in any folder of its archive (in a
            tar also as ``NAME.gz``).
        hint: what to do about a damaged download, ending the messages about one.
    """

    file_name: str
    path: Path
    members: tuple[str, ...] = ()
    hint: str = ""

    @property
    def name(self) -> str:
        """How messages name it: the path through the archives to the file."""
        return " > ".join([str(self.path), *self.members])

    @contextlib.contextmanager
    def open(self) -> Iterator[OpenFile]:
        """The file's bytes, streamed out of its archives."""
        with contextlib.ExitStack() as stack:
            stream: BinaryIO = stack.enter_context(open(self.path, "rb"))
            size: int | None = self.path.stat().st_size
            kind, where = kind_of(self.path.name), str(self.path)
            try:
                for member in self.members:
                    if kind == "zip":
                        archive = stack.enter_context(zipfile.ZipFile(stream))  # a zip member can seek: a zip in a zip opens in place
                        info = _member_of_zip(archive, member, where, self.hint)
                        stream, size, found = stack.enter_context(archive.open(info)), info.file_size, info.filename
                    elif kind == "tar":
                        # Stream mode reads front to back: no seeks, so it works inside a zip or a gzip.
                        mode = "r|" if where.lower().endswith(".tar") else "r|gz"
                        tar = stack.enter_context(tarfile.open(fileobj=stream, mode=mode))
                        info = _member_of_tar(tar, member, where, self.hint)
                        stream, size, found = tar.extractfile(info), info.size, info.name
                    else:
                        raise DataError(where, f"is not an archive; expected {member} inside a .zip or .tar.gz")
                    kind, where = kind_of(found), f"{where} > {member}"
                if kind == "gz":
                    stream, size = stack.enter_context(gzip.GzipFile(fileobj=stream, mode="rb")), None
                elif kind != "text":
                    raise DataError(where, f"expected the file {self.file_name}, found an archive")
            except ARCHIVE_ERRORS as error:
                raise DataError(self.name, f"cannot read the {_word(self.path)} ({error}); {self.hint}") from None
            yield OpenFile(self.name, self.file_name, CheckedStream(stream, self.name, self.hint, _word(self.path)), size)


@dataclass(frozen=True)
class Place:
    """Where a raw file may be: ``path``, and the member chains that may lead to it inside ``path``,
    in order of preference (``((),)``: ``path`` is the file, or its ``.gz``)."""

    path: Path
    chains: tuple[tuple[str, ...], ...] = ((),)


def locate(file_name: str, places: Sequence[Place], *, missing: str, hint: str = "") -> RawFile:
    """``file_name`` at the first of ``places`` whose path exists.

    A zip that may hold the file in more than one form, or inside an archive of its own, is
    listed now (its directory is cheap to read) to choose the chain; a zip that cannot be read
    or holds none of them is a ``DataError`` naming it. Tar members are found when read. No place
    existing is a ``UserError`` listing the paths looked at, then ``missing`` (where to get it).
    """
    place = next((p for p in places if p.path.is_file()), None)
    if place is None:
        looked = ", ".join(str(p.path) for p in places)
        raise UserError(f"{file_name} not found (looked for {looked}); {missing}")
    chains = place.chains
    if kind_of(place.path.name) == "zip" and (len(chains) > 1 or len(chains[0]) > 1):
        try:
            with zipfile.ZipFile(place.path) as archive:
                names = [n for n in archive.namelist() if not n.startswith("__MACOSX")]
        except (*ARCHIVE_ERRORS, OSError) as error:
            raise DataError(place.path, f"cannot read the zip ({error}); {hint}") from None
        held = {Path(n).name for n in names}
        chosen = next((chain for chain in chains if chain and chain[0] in held), None)
        if chosen is None:
            raise holds_no(place.path, [chain[0] for chain in chains if chain], names)
        chains = (chosen,)
    return RawFile(file_name, place.path, chains[0], hint)


def read_header(file: OpenFile, columns: Sequence[str]) -> None:
    """Consume the header line of ``file``, which must name exactly ``columns``, in order."""
    line = file.stream.readline(1 << 20)
    expected = ",".join(columns)
    if not line:
        raise DataError(file.name, f"the file is empty; expected the header {expected}")
    found = line.rstrip(b"\r\n").decode("utf-8", errors="replace").split(",")
    for position, name in enumerate(columns):
        if position >= len(found) or found[position] != name:
            got = repr(found[position]) if position < len(found) else "the end of the line"
            raise DataError(file.name, f"expected the column {name!r} here, found {got} (the header is {expected})", line=1, column=name)
    if len(found) > len(columns):
        message = f"expected {len(columns)} columns, found {len(found)} (the header is {expected})"
        raise DataError(file.name, message, line=1, column=found[len(columns)])
