"""Finding and streaming the six CSVs of the KuaiRand-Pure download, packed or unpacked.

Zenodo serves ``KuaiRand-Pure.tar.gz`` (47 MB; 203 MB unpacked). It holds one folder::

    KuaiRand-Pure/LICENSE
    KuaiRand-Pure/load_data_pure.py
    KuaiRand-Pure/data/log_standard_4_08_to_4_21_pure.csv
    KuaiRand-Pure/data/log_random_4_22_to_5_08_pure.csv
    KuaiRand-Pure/data/user_features_pure.csv
    KuaiRand-Pure/data/log_standard_4_22_to_5_08_pure.csv
    KuaiRand-Pure/data/video_features_statistic_pure.csv
    KuaiRand-Pure/data/video_features_basic_pure.csv

in that order. A user may have the archive or what ``tar xzf`` makes of it. The CSVs are read
straight out of the archive: a gzip stream cannot seek back cheaply, so ``open_csvs`` hands them
out in the order the archive stores them, one pass per call.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from mtreclib.errors import DataError, UserError
from mtreclib.recipes.checked import CheckedStream

ARCHIVE = "KuaiRand-Pure.tar.gz"
DOWNLOAD_URL = "https://zenodo.org/records/10439422/files/KuaiRand-Pure.tar.gz"
HOME_PAGE = "https://kuairand.com/"

STANDARD_EARLY = "log_standard_4_08_to_4_21_pure.csv"
STANDARD_LATE = "log_standard_4_22_to_5_08_pure.csv"
RANDOM = "log_random_4_22_to_5_08_pure.csv"
USERS = "user_features_pure.csv"
VIDEOS_BASIC = "video_features_basic_pure.csv"
VIDEOS_STATISTIC = "video_features_statistic_pure.csv"
CSVS = (STANDARD_EARLY, STANDARD_LATE, RANDOM, USERS, VIDEOS_BASIC, VIDEOS_STATISTIC)

# What a damaged .tar.gz raises: bad headers, a bad gzip stream or checksum, a stream cut short.
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
_CHECK = f"is the download complete? Its size is 47,432,272 bytes ({DOWNLOAD_URL})"


@dataclass(frozen=True)
class OpenCsv:
    """One CSV being read.

    Attributes:
        csv: its file name (one of ``CSVS``).
        name: how messages name it: its path, or ``archive > member`` inside the archive.
        stream: its bytes.
        size: its uncompressed size in bytes.
    """

    csv: str
    name: str
    stream: BinaryIO
    size: int


@dataclass(frozen=True)
class Download:
    """Where the CSVs are: a folder holding them, or the archive (exactly one is set)."""

    folder: Path | None = None
    archive: Path | None = None

    def __str__(self) -> str:
        return str(self.folder if self.folder is not None else self.archive)

    def open_csvs(self, csvs: Sequence[str]) -> Iterator[OpenCsv]:
        """The CSVs named ``csvs``, each open until the next is asked for, in storage order.

        A folder gives them in the order asked; the archive in the order it stores them.
        """
        if self.folder is not None:
            for csv in csvs:
                path = self.folder / csv
                with open(path, "rb") as handle:
                    yield OpenCsv(csv, str(path), handle, path.stat().st_size)
            return
        yield from _archive_csvs(self.archive, csvs)


def _archive_csvs(archive: Path, csvs: Sequence[str]) -> Iterator[OpenCsv]:
    wanted = set(csvs)
    seen: list[str] = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # reads headers lazily: one forward pass through the gzip stream
                seen.append(member.name)
                path = PurePosixPath(member.name)
                # macOS archivers add ._name resource forks (and __MACOSX folders) beside real files
                if path.name not in wanted or not member.isfile() or path.name.startswith("._") or "__MACOSX" in path.parts:
                    continue
                wanted.discard(path.name)
                name = f"{archive} > {member.name}"
                stream = tar.extractfile(member)
                yield OpenCsv(path.name, name, CheckedStream(stream, name, _ARCHIVE_ERRORS, _CHECK), member.size)
                if not wanted:
                    break
            # tarfile ends its iteration quietly at a damaged header, and gzip checks its CRC only
            # at the end: reading on to the end tells damage from a member that is not there.
            while tar.fileobj.read(1 << 20):
                pass
    except _ARCHIVE_ERRORS as error:
        raise DataError(archive, f"the archive is corrupt or truncated ({error}); {_CHECK}") from None
    if not wanted:
        return
    missing = [csv for csv in csvs if csv in wanted]
    held = ", ".join(seen[:10]) or "nothing"
    raise DataError(archive, f"holds no data/{missing[0]} (it holds {held}); is it the KuaiRand-Pure archive from {DOWNLOAD_URL}?")


def find_download(data_dir: str | Path, dataset: str) -> Download:
    """The download under ``data_dir``: the unpacked CSVs or the archive.

    Looked for in ``data_dir/<dataset>/`` then ``data_dir/``: first a folder holding the CSVs
    (``KuaiRand-Pure/data/`` as ``tar xzf`` leaves them, or ``data/``), then ``KuaiRand-Pure.tar.gz``.
    A folder holding some of the CSVs but not all is an error naming the missing one.
    """
    data_dir = Path(data_dir)
    bases = [data_dir / dataset, data_dir]
    folders = [base / sub for base in bases for sub in ("KuaiRand-Pure/data", "data")]
    archives = [base / ARCHIVE for base in bases]
    for folder in folders:
        present = [csv for csv in CSVS if (folder / csv).is_file()]
        if present and len(present) < len(CSVS):
            missing = next(csv for csv in CSVS if csv not in present)
            raise UserError(
                f"{missing} not found in {folder} (it holds {', '.join(present)}); unpack all of {ARCHIVE} "
                f"from {DOWNLOAD_URL} there, or put the archive itself in {data_dir}/"
            )
        if present:
            return Download(folder=folder)
    for archive in archives:
        if archive.is_file():
            return Download(archive=archive)
    looked = ", ".join(str(p) for p in [*archives, *folders])
    raise UserError(
        f"{ARCHIVE} not found, nor its unpacked data/ folder (looked for {looked}); download it from "
        f"{DOWNLOAD_URL} (linked from {HOME_PAGE}) into {data_dir}/"
    )


def read_header(source: OpenCsv, columns: Sequence[str]) -> None:
    """Consume the header line of ``source``, which must name exactly ``columns``, in order."""
    line = source.stream.readline(1 << 20)
    expected = ",".join(columns)
    if not line:
        raise DataError(source.name, f"the file is empty; expected the header {expected}")
    found = line.rstrip(b"\r\n").decode("utf-8", errors="replace").split(",")
    for position, name in enumerate(columns):
        if position >= len(found) or found[position] != name:
            got = repr(found[position]) if position < len(found) else "the end of the line"
            raise DataError(source.name, f"expected the column {name!r} here, found {got} (the header is {expected})", line=1, column=name)
    if len(found) > len(columns):
        raise DataError(source.name, f"expected {len(columns)} columns, found {len(found)} (the header is {expected})", line=1, column=found[len(columns)])
