"""Files in the layout of the KuaiRand downloads (Zenodo's KuaiRand-Pure.tar.gz, KuaiRand-1K.tar.gz,
KuaiRand-27K.tar.gz), for tests and benchmarks.

The values are random, not a model of the real data; what matches the download is the layout,
as the publisher documents it (https://github.com/chongminggao/KuaiRand, "Data Descriptions") and
as pandas writes CSV: six comma-separated files with a header line and ``\\n`` line ends; the 19
integer log columns; user features with text categories (``UNKNOWN``, ranges such as
``"(0,10]"`` quoted because of their comma), integer codes and counts; video features with
``NORMAL``/``AD``, ``YYYY-MM-DD`` upload dates, integer columns that have gaps written as floats
(``720.0``), and ``tag`` as a list of ids (``"12,65"`` quoted, a single id bare, none empty);
missing values as empty fields; logs ordered by user, then time, with ``date`` and ``hourmin``
(``HH00``) the Beijing time of ``time_ms``. The archive holds ``KuaiRand-Pure/`` with the files
in the order of the real one. User and video rows are shuffled, so a join must not rely on order.

The three versions differ in names only: ``KuaiRand-1K/`` with the files suffixed ``_1k``,
``KuaiRand-27K/`` with ``_27k``, and ``KuaiRandConfig.parts`` cuts files into parts
``_part1`` .. ``_partN`` (each with the header line) as the real 27K download cuts its standard
logs (2 parts each) and its video statistics (3; ``PARTS_27K``). The data is the same for the
same config whatever the version: ``csv_texts`` makes Pure's files, then names (and cuts) them.
"""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import re
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

STANDARD_EARLY = "log_standard_4_08_to_4_21_pure.csv"
STANDARD_LATE = "log_standard_4_22_to_5_08_pure.csv"
RANDOM = "log_random_4_22_to_5_08_pure.csv"
USERS = "user_features_pure.csv"
VIDEOS_BASIC = "video_features_basic_pure.csv"
VIDEOS_STATISTIC = "video_features_statistic_pure.csv"
# The real archive's member order (logs first, the basic video features last).
ARCHIVE_ORDER = (STANDARD_EARLY, RANDOM, USERS, STANDARD_LATE, VIDEOS_STATISTIC, VIDEOS_BASIC)
VERSIONS = {"Pure": "pure", "1K": "1k", "27K": "27k"}  # the archive's KuaiRand-<version>/, the files' suffix
# The real 27K download's parts, by file (as Pure names it).
PARTS_27K = ((STANDARD_EARLY, 2), (STANDARD_LATE, 2), (VIDEOS_STATISTIC, 3))

LOG_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,"
    "play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab"
)
USER_HEADER = (
    "user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,follow_user_num,"
    "follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,friend_user_num_range,register_days,"
    "register_days_range," + ",".join(f"onehot_feat{i}" for i in range(18))
)
BASIC_HEADER = "video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,server_height,music_id,music_type,tag"
STATISTIC_COLUMNS = (
    "counts show_cnt show_user_num play_cnt play_user_num play_duration complete_play_cnt complete_play_user_num "
    "valid_play_cnt valid_play_user_num long_time_play_cnt long_time_play_user_num short_time_play_cnt "
    "short_time_play_user_num play_progress comment_stay_duration like_cnt like_user_num click_like_cnt "
    "double_click_cnt cancel_like_cnt cancel_like_user_num comment_cnt comment_user_num direct_comment_cnt "
    "reply_comment_cnt delete_comment_cnt delete_comment_user_num comment_like_cnt comment_like_user_num follow_cnt "
    "follow_user_num cancel_follow_cnt cancel_follow_user_num share_cnt share_user_num download_cnt download_user_num "
    "report_cnt report_user_num reduce_similar_cnt reduce_similar_user_num collect_cnt collect_user_num "
    "cancel_collect_cnt cancel_collect_user_num direct_comment_user_num reply_comment_user_num share_all_cnt "
    "share_all_user_num outsite_share_all_cnt"
).split()
STATISTIC_HEADER = "video_id," + ",".join(STATISTIC_COLUMNS)

# Documented value sets; ranges with the upper bounds used to pick them from the count.
ACTIVE_DEGREES = ("high_active", "full_active", "middle_active", "UNKNOWN")
FOLLOW_RANGES = ((0, "0"), (10, "(0,10]"), (50, "(10,50]"), (100, "(50,100]"), (150, "(100,150]"), (250, "(150,250]"), (500, "(250,500]"), (None, "500+"))
FANS_RANGES = ((0, "0"), (9, "[1,10)"), (99, "[10,100)"), (999, "[100,1k)"), (4999, "[1k,5k)"), (9999, "[5k,1w)"), (None, "[1w,10w)"))
FRIEND_RANGES = ((0, "0"), (4, "[1,5)"), (29, "[5,30)"), (59, "[30,60)"), (119, "[60,120)"), (249, "[120,250)"), (None, "250+"))
REGISTER_RANGES = ((30, "15-30"), (60, "31-60"), (90, "61-90"), (180, "91-180"), (365, "181-365"), (730, "366-730"), (None, "730+"))
ONEHOT_SIZES = (2, 7, 50, 1471, 15, 34, 3, 118, 454, 7, 5, 5, 2, 2, 2, 2, 2, 2)
ONEHOT_WITH_GAPS = (4, 7, 12)  # written as floats with empty fields, as pandas writes an int column with NaN
UPLOAD_TYPES = ("ShortImport", "LongImport", "Web", "PictureSet", "LongPicture", "ShortCamera")
LOG_DAYS = {STANDARD_EARLY: ("2022-04-08", 14), STANDARD_LATE: ("2022-04-22", 17), RANDOM: ("2022-04-22", 17)}
BEIJING = datetime.timezone(datetime.timedelta(hours=8))


@dataclass(frozen=True)
class KuaiRandConfig:
    """What to generate.

    Attributes:
        users, videos: rows of the feature tables (the logs use all of their ids).
        early_rows, late_rows, random_rows: rows of the two standard logs and of the random log.
        seed: the data's seed.
        block_rows: log rows generated at a time (memory of the generator).
        version: ``Pure``, ``1K`` or ``27K``: the names of the archive, its folder and the files.
        parts: (file as Pure names it, number of parts) of the files cut into parts.
    """

    users: int = 40
    videos: int = 30
    early_rows: int = 500
    late_rows: int = 400
    random_rows: int = 200
    seed: int = 0
    block_rows: int = 200_000
    version: str = "Pure"
    parts: tuple[tuple[str, int], ...] = ()


def file_name(pure_name: str, version: str = "Pure", part: int | None = None) -> str:
    """The name in ``version`` of the file Pure names ``pure_name`` (of its part ``part``)."""
    return pure_name.replace("_pure.csv", f"_{VERSIONS[version]}" + ("" if part is None else f"_part{part}") + ".csv")


def _pure_name(name: str, version: str) -> tuple[str, int]:
    """(Pure's name, part or 0) of the file ``name`` of ``version``."""
    match = re.fullmatch(rf"(.+)_{VERSIONS[version]}(?:_part(\d+))?\.csv", name)
    return f"{match.group(1)}_pure.csv", int(match.group(2) or 0)


def _cut(text: bytes, parts: int) -> list[bytes]:
    """``text`` (a header line, rows) as ``parts`` files of about as many rows each, each with the header."""
    header, rows = text.split(b"\n", 1)
    lines = rows.splitlines(keepends=True)
    bounds = [round(i * len(lines) / parts) for i in range(parts + 1)]
    return [header + b"\n" + b"".join(lines[a:b]) for a, b in itertools.pairwise(bounds)]


def version_files(texts: dict[str, bytes], version: str = "Pure", parts: tuple[tuple[str, int], ...] = ()) -> dict[str, bytes]:
    """Pure's files ``texts`` as ``version`` names them, those in ``parts`` cut into parts."""
    cut = dict(parts)
    out = {}
    for name, text in texts.items():
        if name in cut:
            for number, part in enumerate(_cut(text, cut[name]), start=1):
                out[file_name(name, version, number)] = part
        else:
            out[file_name(name, version)] = text
    return out


def joined_files(files: dict[str, bytes], version: str = "Pure") -> dict[str, bytes]:
    """``version_files`` undone: the parts of each file joined in part order (headers once), named as Pure names them."""
    out: dict[str, bytes] = {}
    for name in sorted(files, key=lambda n: _pure_name(n, version)[1]):
        pure, _ = _pure_name(name, version)
        out[pure] = out[pure] + files[name].split(b"\n", 1)[1] if pure in out else files[name]
    return out


def _csv_text(header: str, rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    out.write(header + "\n")
    csv.writer(out, lineterminator="\n").writerows(rows)  # quotes a field with a comma, as pandas does
    return out.getvalue().encode()


def _range(value: int, ranges: tuple) -> str:
    return next(label for bound, label in ranges if bound is None or value <= bound)


def _float(value: float) -> str:
    """A float as pandas writes it: ``720.0``, ``0.3``, ``75.21212121212122``."""
    return repr(float(value))


def user_rows(config: KuaiRandConfig) -> list[list[str]]:
    rng = np.random.default_rng([config.seed, 1])
    rows = []
    for user in rng.permutation(config.users):
        follow, fans, friends = (int(x) for x in rng.geometric([0.02, 0.01, 0.1]) - 1)
        register = int(rng.integers(15, 3000))
        row = [str(user), str(rng.choice(ACTIVE_DEGREES)), *(str(int(x)) for x in rng.integers(0, 2, 3))]
        row += [str(follow), _range(follow, FOLLOW_RANGES), str(fans), _range(fans, FANS_RANGES)]
        row += [str(friends), _range(friends, FRIEND_RANGES), str(register), _range(register, REGISTER_RANGES)]
        for i, size in enumerate(ONEHOT_SIZES):
            value = int(rng.integers(0, size))
            if i in ONEHOT_WITH_GAPS:
                row.append("" if rng.random() < 0.2 else _float(value))
            else:
                row.append(str(value))
        rows.append(row)
    return rows


def basic_rows(config: KuaiRandConfig) -> list[list[str]]:
    rng = np.random.default_rng([config.seed, 2])
    rows = []
    for video in rng.permutation(config.videos):
        gap = rng.random(5) < 0.12
        # Upload dates from 2019 on, some during the logs' month (on a later day than some of
        # the video's log rows: such an age below zero is clipped).
        recent = rng.random() < 0.2
        upload = datetime.date(2022, 4, 1) + datetime.timedelta(days=int(rng.integers(0, 38))) if recent else (
            datetime.date(2019, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 1186)))
        )
        tags = [str(t) for t in rng.choice(80, size=int(rng.integers(0, 4)), replace=False)]
        rows.append(
            [
                str(video),
                str(int(rng.integers(0, 8_839_735))),
                "AD" if rng.random() < 0.1 else "NORMAL",
                "" if gap[0] else upload.isoformat(),
                str(rng.choice(UPLOAD_TYPES)),
                "" if gap[1] else _float(rng.integers(0, 2)),
                "" if gap[2] else _float(rng.integers(0, 600) * 100),
                _float(rng.choice([540, 720, 1080])),
                _float(rng.choice([960, 1280, 1920])),
                str(int(rng.integers(0, 10**9))),
                "" if gap[3] else _float(rng.integers(0, 10)),
                ",".join(tags),
            ]
        )
    return rows


def statistic_rows(config: KuaiRandConfig) -> list[list[str]]:
    rng = np.random.default_rng([config.seed, 3])
    rows = []
    for video in rng.permutation(config.videos):
        counts = int(rng.integers(1, 70))
        values = rng.exponential(20.0, len(STATISTIC_COLUMNS) - 1) * (rng.random(len(STATISTIC_COLUMNS) - 1) < 0.7)
        values[STATISTIC_COLUMNS.index("play_progress") - 1] = rng.random() * 1.2  # a mean play ratio
        cells = [_float(round(v, int(rng.integers(0, 6)))) if rng.random() > 0.02 else "" for v in values]
        rows.append([str(video), str(counts), *cells])
    return rows


def log_blocks(config: KuaiRandConfig, csv_name: str) -> Iterator[pa.Table]:
    """The log ``csv_name`` as tables of at most ``block_rows`` rows, in file order (user, then time)."""
    total = {STANDARD_EARLY: config.early_rows, STANDARD_LATE: config.late_rows, RANDOM: config.random_rows}[csv_name]
    rng = np.random.default_rng([config.seed, 10 + ARCHIVE_ORDER.index(csv_name)])
    first, days = LOG_DAYS[csv_name]
    start = int(datetime.datetime.fromisoformat(first).replace(tzinfo=BEIJING).timestamp() * 1000)
    per_user = rng.multinomial(total, np.full(config.users, 1 / config.users))
    ends = np.cumsum(per_user)
    first_user = 0
    while first_user < config.users:  # blocks of whole users, so each user's rows are in time order
        done = int(ends[first_user - 1]) if first_user else 0
        last_user = max(first_user + 1, int(np.searchsorted(ends, done + config.block_rows, side="right")))
        user = np.repeat(np.arange(first_user, last_user), per_user[first_user:last_user])
        first_user = last_user
        n = len(user)
        if n == 0:
            continue
        time_ms = start + rng.integers(0, days * 86_400_000, n)
        order = np.lexsort((time_ms, user))
        user, time_ms = user[order], time_ms[order]
        local = time_ms // 1000 + 8 * 3600  # Beijing time, seconds
        day = (local // 86_400).astype("datetime64[D]")
        month = day.astype("datetime64[M]")
        year = month.astype("datetime64[Y]").astype(np.int64) + 1970
        date = year * 10000 + (month.astype(np.int64) % 12 + 1) * 100 + (day - month).astype(np.int64) + 1
        hourmin = (local % 86_400) // 3600 * 100
        click = rng.random(n) < 0.4
        long_view = rng.random(n) < 0.3
        duration = rng.integers(0, 300_000, n)
        columns = {
            "user_id": user,
            "video_id": rng.integers(0, config.videos, n),
            "date": date,
            "hourmin": hourmin,
            "time_ms": time_ms,
            "is_click": click,
            "is_like": rng.random(n) < 0.1,
            "is_follow": rng.random(n) < 0.05,
            "is_comment": rng.random(n) < 0.05,
            "is_forward": rng.random(n) < 0.05,
            "is_hate": rng.random(n) < 0.03,
            "long_view": long_view,
            "play_time_ms": rng.integers(0, 400_000, n) * (rng.random(n) < 0.9),
            "duration_ms": duration,
            "profile_stay_time": rng.integers(0, 60_000, n) * (rng.random(n) < 0.1),
            "comment_stay_time": rng.integers(0, 60_000, n) * (rng.random(n) < 0.1),
            "is_profile_enter": rng.random(n) < 0.08,
            "is_rand": np.full(n, csv_name == RANDOM),
            "tab": rng.integers(0, 15, n),
        }
        yield pa.table({name: np.asarray(values, dtype=np.int64) for name, values in columns.items()})


def _log_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return sink.getvalue()


def csv_texts(config: KuaiRandConfig = KuaiRandConfig()) -> dict[str, bytes]:
    """The six CSVs' bytes (cut into ``config.parts``), by file name in ``config.version`` (for small
    configs; ``generate_download`` streams)."""
    texts = {
        USERS: _csv_text(USER_HEADER, user_rows(config)),
        VIDEOS_BASIC: _csv_text(BASIC_HEADER, basic_rows(config)),
        VIDEOS_STATISTIC: _csv_text(STATISTIC_HEADER, statistic_rows(config)),
    }
    for name in (STANDARD_EARLY, STANDARD_LATE, RANDOM):
        texts[name] = (LOG_HEADER + "\n").encode() + b"".join(_log_bytes(block) for block in log_blocks(config, name))
    return version_files(texts, config.version, config.parts)


def _extras(version: str) -> dict[str, bytes]:
    return {"LICENSE": b"Attribution-ShareAlike 4.0 International (placeholder)\n", f"load_data_{VERSIONS[version]}.py": b"import pandas as pd\n"}


def _tar(archive: Path, files: dict[str, Path | bytes], compresslevel: int, version: str = "Pure") -> None:
    """``archive`` with ``KuaiRand-<version>/`` holding ``files`` (data/ CSVs by name), in the real
    member order (the parts of a file in part order where the whole file would be)."""
    top = f"KuaiRand-{version}"
    extras = _extras(version)
    with tarfile.open(archive, "w:gz", compresslevel=compresslevel) as tar:

        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)

        def add(name: str, content: Path | bytes) -> None:
            if isinstance(content, Path):
                tar.add(content, arcname=name)
                return
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))

        add_dir(top)
        add(f"{top}/LICENSE", extras["LICENSE"])
        add_dir(f"{top}/data")
        loader = next(name for name in extras if name.endswith(".py"))
        add(f"{top}/{loader}", extras[loader])
        for pure in ARCHIVE_ORDER:
            for name in sorted((n for n in files if _pure_name(n, version)[0] == pure), key=lambda n: _pure_name(n, version)[1]):
                add(f"{top}/data/{name}", files[name])


def write_download(directory: str | Path, texts: dict[str, bytes], *, packed: bool = True, compresslevel: int = 6, version: str = "Pure") -> Path:
    """Write ``texts`` (files named as ``version`` names them) as the download: ``directory/KuaiRand-Pure.tar.gz``,
    or unpacked as ``directory/KuaiRand-Pure/{LICENSE, load_data_pure.py, data/*.csv}`` (what ``tar xzf``
    makes); for 1K and 27K, ``KuaiRand-1K`` and ``load_data_1k.py`` and so on.

    Files missing from ``texts`` are left out. Returns the archive or the data folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if packed:
        archive = directory / f"KuaiRand-{version}.tar.gz"
        _tar(archive, texts, compresslevel, version)
        return archive
    data = directory / f"KuaiRand-{version}" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, content in _extras(version).items():
        (data.parent / name).write_bytes(content)
    for name, text in texts.items():
        (data / name).write_bytes(text)
    return data


def _cut_file(path: Path, parts: int, names: list[Path]) -> None:
    """The file ``path`` (a header line, rows) cut into ``parts`` files ``names`` as ``_cut`` cuts text, streamed."""
    with open(path, "rb") as source:
        header = source.readline()
        rows = sum(1 for _ in source)
    bounds = [round(i * rows / parts) for i in range(parts + 1)]
    with open(path, "rb") as source:
        source.readline()
        for name, (a, b) in zip(names, itertools.pairwise(bounds)):
            with open(name, "wb") as out:
                out.write(header)
                out.writelines(source.readline() for _ in range(b - a))
    path.unlink()


def generate_download(directory: str | Path, config: KuaiRandConfig, *, packed: bool = True, compresslevel: int = 1) -> Path:
    """Like ``write_download`` for a large ``config``: the logs are written a block at a time."""
    directory = Path(directory)
    top = f"KuaiRand-{config.version}"
    staging = directory / (f"{top}.staging" if packed else top) / "data"
    staging.mkdir(parents=True, exist_ok=True)
    small = {
        USERS: _csv_text(USER_HEADER, user_rows(config)),
        VIDEOS_BASIC: _csv_text(BASIC_HEADER, basic_rows(config)),
        VIDEOS_STATISTIC: _csv_text(STATISTIC_HEADER, statistic_rows(config)),
    }
    for name, text in small.items():
        (staging / name).write_bytes(text)
    for name in (STANDARD_EARLY, STANDARD_LATE, RANDOM):
        with open(staging / name, "wb") as out:
            out.write((LOG_HEADER + "\n").encode())
            for block in log_blocks(config, name):
                out.write(_log_bytes(block))
    cut = dict(config.parts)
    for pure in ARCHIVE_ORDER:  # Pure's names to the version's, files cut into parts
        if pure in cut:
            _cut_file(staging / pure, cut[pure], [staging / file_name(pure, config.version, n) for n in range(1, cut[pure] + 1)])
        elif file_name(pure, config.version) != pure:
            (staging / pure).rename(staging / file_name(pure, config.version))
    if not packed:
        for name, content in _extras(config.version).items():
            (staging.parent / name).write_bytes(content)
        return staging
    archive = directory / f"{top}.tar.gz"
    _tar(archive, {path.name: path for path in staging.iterdir()}, compresslevel, config.version)
    shutil.rmtree(staging.parent)
    return archive
