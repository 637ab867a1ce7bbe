"""Finding and opening the four raw files of the Ali-CCP download, packed or not.

Tianchi serves ``sample_train.tar.gz`` (holding ``sample_skeleton_train.csv`` and
``common_features_train.csv``) and ``sample_test.tar.gz`` (the same for ``test``). Each CSV is
read from whichever form is there: the CSV itself, or its member of the archive, streamed out of
the gzip without unpacking to disk. A gzip stream cannot seek, so reading the skeleton after the
common features opens the archive a second time; when the skeleton is the archive's first
member, reaching the common features decompresses it once more (a minute at full size).
"""

from __future__ import annotations

import contextlib
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mtreclib.core.errors import DataError, UserError
from mtreclib.recipes.checked import CheckedStream

DATASET_PAGE = "https://tianchi.aliyun.com/dataset/408"
SPLITS = ("train", "test")
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def skeleton_name(split: str) -> str:
    return f"sample_skeleton_{split}.csv"


def common_name(split: str) -> str:
    return f"common_features_{split}.csv"


def archive_name(split: str) -> str:
    return f"sample_{split}.tar.gz"


def _check(path: Path) -> str:
    return f"is the download of {path.name} from {DATASET_PAGE} complete?"


@dataclass(frozen=True)
class RawFile:
    """One raw CSV: a file, or a member of its split's ``.tar.gz``.

    Attributes:
        csv_name: the CSV's name (``sample_skeleton_train.csv`` ...).
        path: the CSV, or the archive holding it.
        packed: whether ``path`` is the archive.
    """

    csv_name: str
    path: Path
    packed: bool = False

    @property
    def name(self) -> str:
        """How messages name it: ``data/sample_train.tar.gz > sample_skeleton_train.csv``."""
        return f"{self.path} > {self.csv_name}" if self.packed else str(self.path)

    @contextlib.contextmanager
    def open(self) -> Iterator[tuple[BinaryIO, int]]:
        """The CSV's bytes as a stream, and their total size (uncompressed)."""
        if not self.packed:
            with open(self.path, "rb") as handle:
                yield handle, self.path.stat().st_size
            return
        with open(self.path, "rb") as raw, contextlib.ExitStack() as stack:
            try:
                archive = stack.enter_context(tarfile.open(fileobj=raw, mode="r|gz"))
                held = []
                for member in archive:  # a stream: members go by once, in archive order
                    if member.isfile() and Path(member.name).name == self.csv_name:
                        stream = archive.extractfile(member)
                        break
                    held.append(member.name)
                else:
                    raise DataError(self.path, f"holds no {self.csv_name} (it holds {', '.join(held[:6]) or 'nothing'}); {_check(self.path)}")
            except _ARCHIVE_ERRORS as error:
                raise DataError(self.path, f"cannot read the archive ({error}); {_check(self.path)}") from None
            yield CheckedStream(stream, self.name, _ARCHIVE_ERRORS, _check(self.path)), member.size


def find_raw_files(data_dir: str | Path, dataset: str) -> dict[str, dict[str, RawFile]]:
    """The raw files under ``data_dir``: ``{split: {"skeleton": RawFile, "common": RawFile}}``.

    Each CSV is looked for, in this order, unpacked in ``data_dir/<dataset>/`` and ``data_dir/``,
    then inside ``sample_<split>.tar.gz`` in the same two folders.
    """
    data_dir = Path(data_dir)
    folders = [data_dir / dataset, data_dir]
    found: dict[str, dict[str, RawFile]] = {}
    for split in SPLITS:
        archives = [folder / archive_name(split) for folder in folders]
        archive = next((path for path in archives if path.is_file()), None)
        found[split] = {}
        for kind, csv_name in (("skeleton", skeleton_name(split)), ("common", common_name(split))):
            candidates = [folder / csv_name for folder in folders]
            path = next((p for p in candidates if p.is_file()), None)
            if path is not None:
                found[split][kind] = RawFile(csv_name, path)
            elif archive is not None:
                found[split][kind] = RawFile(csv_name, archive, packed=True)
            else:
                looked = ", ".join(str(p) for p in [*candidates, *archives])
                raise UserError(
                    f"{csv_name} not found (looked for {looked}); download {archive_name(split)} from {DATASET_PAGE} "
                    f"into {data_dir}/ (see docs/recipes/aliccp.md)"
                )
    return found
