"""Finding and opening the four raw files of the AliExpress download, zipped or not.

The Tianchi download ``aliexpress_<CC>_datasets.zip`` holds a folder ``aliexpress_<CC>_datasets/``
with four zips (``<cc>_user_train.zip``, ``<cc>_item_train.zip``, ``<cc>_user_test.zip``,
``<cc>_item_test.zip``), each holding one headerless CSV of the same name. A user may have the
outer zip, the inner zips (the outer one unpacked) or the CSVs (everything unpacked); each file is
read from whichever form is there, straight out of the zips, without unpacking to disk.
"""

from __future__ import annotations

import contextlib
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mtreclib.core.errors import DataError, UserError
from mtreclib.recipes.checked import CheckedStream

COUNTRIES = ("NL", "ES", "FR", "US", "RU")
KINDS = ("user_train", "item_train", "user_test", "item_test")
DATASET_PAGE = "https://tianchi.aliyun.com/dataset/dataDetail?dataId=74690"
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


def country_of(dataset: str) -> str:
    """``AliExpress_NL`` -> ``NL``; other names are a user error."""
    match = re.fullmatch(r"AliExpress_([A-Za-z]{2})", dataset)
    if match is None or match.group(1).upper() not in COUNTRIES:
        choices = ", ".join(f"AliExpress_{c}" for c in COUNTRIES)
        raise UserError(f"unknown AliExpress dataset {dataset!r}; expected one of {choices}")
    return match.group(1).upper()


def outer_zip_name(country: str) -> str:
    return f"aliexpress_{country}_datasets.zip"


@dataclass(frozen=True)
class RawFile:
    """Where one raw CSV is.

    Attributes:
        csv_name: the CSV's name, ``nl_item_train.csv``.
        path: the file on disk: the CSV itself, the zip holding it, or the outer zip.
        inner: inside the outer zip, the member that is the inner zip (None otherwise).
    """

    csv_name: str
    path: Path
    inner: str | None = None

    @property
    def name(self) -> str:
        """How error messages name it: the path through the zips to the CSV."""
        if self.path.suffix.lower() != ".zip":
            return str(self.path)
        parts = [str(self.path), *([self.inner] if self.inner else []), self.csv_name]
        return " > ".join(parts)

    @contextlib.contextmanager
    def open(self) -> Iterator[tuple[BinaryIO, int]]:
        """The CSV's bytes as a stream, and their total size (uncompressed)."""
        if self.path.suffix.lower() != ".zip":
            with open(self.path, "rb") as handle:
                yield handle, self.path.stat().st_size
            return
        with contextlib.ExitStack() as stack:
            try:
                archive = stack.enter_context(zipfile.ZipFile(self.path))
                where = str(self.path)
                if self.inner is not None:
                    where = f"{self.path} > {self.inner}"
                    # A zip member can be read with seeks, so the inner zip opens in place.
                    archive = stack.enter_context(zipfile.ZipFile(stack.enter_context(archive.open(self.inner))))
                member = _member(archive, self.csv_name, where)
                stream = stack.enter_context(archive.open(member))
            except _ZIP_ERRORS as error:
                raise DataError(self.name, f"cannot read the zip ({error}); is the download complete? {_CHECK}") from None
            yield CheckedStream(stream, self.name, _ZIP_ERRORS, _CHECK, kind="zip"), member.file_size


_CHECK = f"compare its md5 with md5.txt on {DATASET_PAGE}"


def _member(archive: zipfile.ZipFile, csv_name: str, where: str) -> zipfile.ZipInfo:
    """The member of ``archive`` named ``csv_name`` (in any folder)."""
    for info in archive.infolist():
        if Path(info.filename).name == csv_name and not info.filename.startswith("__MACOSX"):
            return info
    held = ", ".join(info.filename for info in archive.infolist()[:6]) or "nothing"
    raise DataError(where, f"holds no {csv_name} (it holds {held})")


def find_raw_files(data_dir: str | Path, dataset: str) -> dict[str, RawFile]:
    """The four raw files of ``dataset`` (``AliExpress_NL`` ...) under ``data_dir``, by kind.

    Each is looked for, in this order, as a CSV, then as its zip, in ``data_dir/<dataset>/`` and
    ``data_dir/aliexpress_<CC>_datasets/``; then inside ``aliexpress_<CC>_datasets.zip`` in
    ``data_dir`` or ``data_dir/<dataset>``.
    """
    data_dir = Path(data_dir)
    country = country_of(dataset)
    folders = [data_dir / dataset, data_dir / f"aliexpress_{country}_datasets"]
    outers = [data_dir / outer_zip_name(country), data_dir / dataset / outer_zip_name(country)]
    outer = next((path for path in outers if path.is_file()), None)
    outer_members: list[str] | None = None
    found = {}
    for kind in KINDS:
        stem = f"{country.lower()}_{kind}"
        candidates = [folder / f"{stem}{suffix}" for suffix in (".csv", ".zip") for folder in folders]
        path = next((p for p in candidates if p.is_file()), None)
        if path is not None:
            found[kind] = RawFile(f"{stem}.csv", path)
            continue
        if outer is None:
            looked = ", ".join(str(p) for p in [*candidates, *outers])
            raise UserError(
                f"{stem}.csv not found (looked for {looked}); download {outer_zip_name(country)} from {DATASET_PAGE} "
                f"into {data_dir}/ (see the README, 'Data')"
            )
        if outer_members is None:
            try:
                with zipfile.ZipFile(outer) as archive:
                    outer_members = archive.namelist()
            except _ZIP_ERRORS + (OSError,) as error:
                raise DataError(outer, f"cannot read the zip ({error}); is the download complete? {_CHECK}") from None
        inner = next((m for m in outer_members if Path(m).name == f"{stem}.zip" and not m.startswith("__MACOSX")), None)
        if inner is None:
            raise DataError(outer, f"holds no {stem}.zip (it holds {', '.join(outer_members[:6]) or 'nothing'})")
        found[kind] = RawFile(f"{stem}.csv", outer, inner)
    return found
