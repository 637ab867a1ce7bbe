"""Finding and streaming the CSVs of a KuaiRand download (Pure, 1K or 27K), packed or unpacked.

The publisher (https://kuairand.com/, https://github.com/chongminggao/KuaiRand) releases three
versions with one layout; Zenodo serves each as one archive (record 10439422). ``KuaiRand-Pure.tar.gz``
(47 MB; 203 MB unpacked) holds one folder::

    KuaiRand-Pure/LICENSE
    KuaiRand-Pure/load_data_pure.py
    KuaiRand-Pure/data/log_standard_4_08_to_4_21_pure.csv
    KuaiRand-Pure/data/log_random_4_22_to_5_08_pure.csv
    KuaiRand-Pure/data/user_features_pure.csv
    KuaiRand-Pure/data/log_standard_4_22_to_5_08_pure.csv
    KuaiRand-Pure/data/video_features_statistic_pure.csv
    KuaiRand-Pure/data/video_features_basic_pure.csv

in that order. ``KuaiRand-1K.tar.gz`` (about 1 GB; 4.3 GB unpacked) holds ``KuaiRand-1K/`` with
the same six files suffixed ``_1k``; ``KuaiRand-27K.tar.gz`` (about 9.2 GB; 46 GB unpacked)
``KuaiRand-27K/`` with them suffixed ``_27k``, four of them cut in parts (the publisher's README,
"Data Descriptions")::

    log_random_4_22_to_5_08_27k.csv
    log_standard_4_08_to_4_21_27k_part1.csv, ..._part2.csv
    log_standard_4_22_to_5_08_27k_part1.csv, ..._part2.csv
    user_features_27k.csv
    video_features_basic_27k.csv
    video_features_statistic_27k_part1.csv, ..._part2.csv, ..._part3.csv

A part is a CSV of its own, header included (third-party loaders read each part with pandas or
polars and concatenate the frames). Any of the six files may come whole or in parts
``_part1`` .. ``_partN`` (numbered from 1 without gaps), in every version; the parts of a file
are read as one file, in part order when unpacked.

A user may have the archive or what ``tar xzf`` makes of it. The CSVs are read straight out of
the archive: a gzip stream cannot seek back cheaply, so ``open_csvs`` hands them out in the
order the archive stores them, one pass per call.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mtreclib.core.errors import DataError, UserError
from mtreclib.recipes.kit.files import ARCHIVE_ERRORS, CheckedStream, OpenFile, holds_no

HOME_PAGE = "https://kuairand.com/"
ZENODO = "https://zenodo.org/records/10439422/files/"

# The six files by what they hold: a file of a version is STEM_SUFFIX.csv or STEM_SUFFIX_partN.csv.
STANDARD_EARLY = "log_standard_4_08_to_4_21"
STANDARD_LATE = "log_standard_4_22_to_5_08"
RANDOM = "log_random_4_22_to_5_08"
USERS = "user_features"
VIDEOS_BASIC = "video_features_basic"
VIDEOS_STATISTIC = "video_features_statistic"
STEMS = (STANDARD_EARLY, STANDARD_LATE, RANDOM, USERS, VIDEOS_BASIC, VIDEOS_STATISTIC)


@dataclass(frozen=True)
class Version:
    """One of the publisher's three versions.

    Attributes:
        dataset: the recipe's dataset name (``KuaiRandPure``), the output folder's name.
        folder: the archive's top folder (``KuaiRand-Pure``); the archive is ``folder.tar.gz``.
        suffix: the CSVs' suffix (``pure``, ``1k``, ``27k``).
        size: the archive's size, for the message about a damaged one.
        identity_ids: the spec declares ``user_id`` and ``video_id`` with ``vocabulary: identity``
            (kuairand_spec.py): the publisher's ids are dense from 0, and a built vocabulary of
            millions of video ids would be stored value by value in the cache and every checkpoint.
    """

    dataset: str
    folder: str
    suffix: str
    size: str
    identity_ids: bool

    @property
    def archive(self) -> str:
        return f"{self.folder}.tar.gz"

    @property
    def url(self) -> str:
        return ZENODO + self.archive

    def csv(self, stem: str, part: int | None = None) -> str:
        """The file name of ``stem`` in this version (of its part ``part``)."""
        return f"{stem}_{self.suffix}{'' if part is None else f'_part{part}'}.csv"

    def match(self, name: str) -> tuple[str, int | None] | None:
        """(stem, part or None) of the file name ``name`` if it is one of this version's CSVs."""
        found = re.fullmatch(rf"({'|'.join(STEMS)})_{re.escape(self.suffix)}(?:_part([1-9][0-9]*))?\.csv", name)
        return None if found is None else (found.group(1), None if found.group(2) is None else int(found.group(2)))

    @property
    def check(self) -> str:
        """The hint of a message about a damaged archive."""
        return f"is the download complete? Its size is {self.size} ({self.url})"


PURE = Version("KuaiRandPure", "KuaiRand-Pure", "pure", "47,432,272 bytes", identity_ids=False)
ONE_K = Version("KuaiRand1K", "KuaiRand-1K", "1k", "about 1 GB", identity_ids=True)
FULL = Version("KuaiRand27K", "KuaiRand-27K", "27k", "about 9.2 GB", identity_ids=True)
VERSIONS = {version.dataset: version for version in (PURE, ONE_K, FULL)}


@dataclass(frozen=True)
class OpenCsv(OpenFile):
    """One CSV being read (``OpenFile``: ``name`` through the archive, ``file_name``, ``stream``, ``size``).

    Attributes:
        stem: which of the six files it is (one of ``STEMS``).
    """

    stem: str = ""


@dataclass(frozen=True)
class Download:
    """Where the CSVs are: a folder holding them, or the archive (exactly one is set).

    ``files``: for a folder, the file names of each stem, in part order.
    """

    version: Version
    folder: Path | None = None
    archive: Path | None = None
    files: dict[str, list[str]] = field(default_factory=dict)

    def __str__(self) -> str:
        return str(self.folder if self.folder is not None else self.archive)

    def open_csvs(self, stems: Sequence[str]) -> Iterator[OpenCsv]:
        """The CSVs of ``stems`` (all parts), each open until the next is asked for, in storage order.

        A folder gives them in the order asked, parts in part order; the archive in the order it
        stores them.
        """
        if self.folder is not None:
            for stem in stems:
                for csv in self.files[stem]:
                    path = self.folder / csv
                    with open(path, "rb") as handle:
                        yield OpenCsv(str(path), csv, handle, path.stat().st_size, stem)
            return
        yield from _archive_csvs(self.archive, self.version, stems)


def _parts_problem(version: Version, stem: str, plain: bool, parts: Sequence[int]) -> str | None:
    """What is wrong with the files of ``stem`` found (the whole file and/or these parts), if anything."""
    if plain and parts:
        return f"holds both {version.csv(stem)} and {version.csv(stem, min(parts))}; keep either the whole file or its parts"
    if parts:
        missing = next((n for n in range(1, max(parts) + 1) if n not in parts), None)
        if missing is not None:
            held = ", ".join(version.csv(stem, n) for n in sorted(parts))
            return f"holds {held} but not {version.csv(stem, missing)}"
    return None


def _archive_csvs(archive: Path, version: Version, stems: Sequence[str]) -> Iterator[OpenCsv]:
    wanted = set(stems)
    plain: dict[str, bool] = dict.fromkeys(stems, False)
    parts: dict[str, list[int]] = {stem: [] for stem in stems}
    seen: list[str] = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # Reads headers lazily: one forward pass through the gzip stream, to its end (parts
            # may follow anywhere, and a gzip stream's checksum is checked only at its end).
            for member in tar:
                seen.append(member.name)
                path = PurePosixPath(member.name)
                # macOS archivers add ._name resource forks (and __MACOSX folders) beside real files
                if not member.isfile() or path.name.startswith("._") or "__MACOSX" in path.parts:
                    continue
                found = version.match(path.name)
                if found is None or found[0] not in wanted:
                    continue
                stem, part = found
                if part is None:
                    plain[stem] = True
                else:
                    parts[stem].append(part)
                name = f"{archive} > {member.name}"
                stream = tar.extractfile(member)
                yield OpenCsv(name, path.name, CheckedStream(stream, name, version.check), member.size, stem)
            # tarfile ends its iteration quietly at a damaged header: reading on to the end tells
            # damage from a member that is not there.
            while tar.fileobj.read(1 << 20):
                pass
    except ARCHIVE_ERRORS as error:
        raise DataError(archive, f"the archive is corrupt or truncated ({error}); {version.check}") from None
    for stem in stems:
        if not plain[stem] and not parts[stem]:
            raise holds_no(archive, [f"data/{version.csv(stem)}"], seen, f"is it the {version.folder} archive from {version.url}?")
        if (problem := _parts_problem(version, stem, plain[stem], parts[stem])) is not None:
            raise DataError(archive, problem)


def _folder_files(folder: Path, version: Version) -> dict[str, list[str]]:
    """The CSVs of each stem present in ``folder`` (none, the whole file, or parts in part order)."""
    files: dict[str, list[str]] = {stem: [] for stem in STEMS}
    if not folder.is_dir():
        return files
    for path in folder.iterdir():
        if path.is_file() and (found := version.match(path.name)) is not None:
            files[found[0]].append(path.name)
    for stem in STEMS:
        plain = version.csv(stem) in files[stem]
        parts = [version.match(name)[1] for name in files[stem] if name != version.csv(stem)]
        if (problem := _parts_problem(version, stem, plain, parts)) is not None:
            raise UserError(f"{folder} {problem}")
        files[stem].sort(key=lambda name: version.match(name)[1] or 0)
    return files


def find_download(data_dir: str | Path, version: Version) -> Download:
    """The download of ``version`` under ``data_dir``: the unpacked CSVs or the archive.

    Looked for in ``data_dir/<dataset>/`` then ``data_dir/``: first a folder holding the CSVs
    (``KuaiRand-Pure/data/`` as ``tar xzf`` leaves them, or ``data/``), then ``KuaiRand-Pure.tar.gz``.
    A folder holding some of the CSVs but not all is an error naming the missing one.
    """
    data_dir = Path(data_dir)
    bases = [data_dir / version.dataset, data_dir]
    folders = [base / sub for base in bases for sub in (f"{version.folder}/data", "data")]
    archives = [base / version.archive for base in bases]
    for folder in folders:
        files = _folder_files(folder, version)
        present = [stem for stem in STEMS if files[stem]]
        if present and len(present) < len(STEMS):
            missing = version.csv(next(stem for stem in STEMS if not files[stem]))
            held = ", ".join(name for stem in present for name in files[stem])
            raise UserError(
                f"{missing} not found in {folder} (it holds {held}); unpack all of {version.archive} "
                f"from {version.url} there, or put the archive itself in {data_dir}/"
            )
        if present:
            return Download(version, folder=folder, files=files)
    for archive in archives:
        if archive.is_file():
            return Download(version, archive=archive)
    looked = ", ".join(str(p) for p in [*archives, *folders])
    raise UserError(
        f"{version.archive} not found, nor its unpacked data/ folder (looked for {looked}); download it from "
        f"{version.url} (linked from {HOME_PAGE}) into {data_dir}/"
    )
