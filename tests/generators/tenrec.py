"""Files in the layout of Tenrec's CSVs (QK-video.csv, QB-video.csv, ctr_data_1M.csv), for tests and benchmarks.

The values are random, not a model of the real data; what matches the publisher's files is the
layout: a header line, ``user_id,item_id,click,follow,like,share,video_category,watching_times,gender,age``
(``ctr_data_1M.csv`` adds ``hist_1 .. hist_10``), integers without quotes, ``\\N`` for a missing
value (``video_category`` has them in the real files; here ``gender`` and ``age`` too), ``\\n``
line ends, the rows of a user together and users in increasing id order (as in ctr_data_1M.csv).
The labels are 0/1; a like, follow or share may come without a click, as the publisher says they
do. ``hist_1 .. hist_10`` are, as the publisher's ``gen_ctr.py`` builds them, a user's first
clicked videos (the first ten; with ten or fewer, all but the last) padded with ``0``, the same
on every row of the user; users without a click have no rows in ctr_data_1M.csv.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLUMNS = ("user_id", "item_id", "click", "follow", "like", "share", "video_category", "watching_times", "gender", "age")
HISTORY = tuple(f"hist_{i}" for i in range(1, 11))
FILES = ("QK-video.csv", "QB-video.csv", "ctr_data_1M.csv")
MISSING = "\\N"


@dataclass(frozen=True)
class TenrecConfig:
    users: int = 50
    items: int = 300
    rows_per_user: tuple[int, int] = (5, 40)  # drawn uniformly in [low, high)
    rates: tuple[float, float, float, float] = (0.3, 0.08, 0.15, 0.08)  # click, follow, like, share
    missing: float = 0.05  # share of \N in video_category, gender and age
    seed: int = 0


def rows(config: TenrecConfig, file: str = "QK-video.csv") -> list[list[str]]:
    """The data lines of ``file`` (without the header), as the values' text."""
    rng = np.random.default_rng((config.seed, FILES.index(file)))
    out = []
    for user in range(1, config.users + 1):
        n = int(rng.integers(*config.rows_per_user))
        items = rng.integers(1, config.items + 1, n)
        labels = (rng.random((n, 4)) < np.array(config.rates)).astype(int)
        gender, age = int(rng.integers(0, 3)), int(rng.integers(0, 9))  # a user's, on each of their rows
        lines = []
        for i in range(n):
            category = MISSING if rng.random() < config.missing else str(int(rng.integers(0, 2)))
            user_values = [MISSING if rng.random() < config.missing else str(v) for v in (gender, age)]
            watching = int(rng.integers(1, 4)) if labels[i, 0] else int(rng.integers(0, 2))
            lines.append([str(user), str(items[i]), *map(str, labels[i]), category, str(watching), *user_values])
        if file == "ctr_data_1M.csv":
            clicked = [int(item) for item, label in zip(items, labels[:, 0]) if label]
            if not clicked:
                continue
            history = clicked[:10] if len(clicked) > 10 else clicked[:-1]
            padded = [str(item) for item in history] + ["0"] * (10 - len(history))
            lines = [line + padded for line in lines]
        out += lines
    return out


def header(file: str) -> str:
    return ",".join(COLUMNS + (HISTORY if file == "ctr_data_1M.csv" else ()))


def csv_text(config: TenrecConfig, file: str = "QK-video.csv") -> bytes:
    return (header(file) + "\n" + "".join(",".join(line) + "\n" for line in rows(config, file))).encode()


def write_download(data_dir: str | Path, texts: dict[str, bytes], *, where: str = "Tenrec", packed: bool = False) -> Path:
    """``texts`` (file name -> bytes) into ``data_dir/where/``, or packed in ``Tenrec.zip`` there
    (members ``Tenrec/<file>``, as the publisher's archive holds them); returns the folder or the zip."""
    folder = Path(data_dir) / where
    folder.mkdir(parents=True, exist_ok=True)
    if not packed:
        for name, text in texts.items():
            (folder / name).write_bytes(text)
        return folder
    archive = folder / "Tenrec.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as packed_files:
        for name, text in texts.items():
            packed_files.writestr(f"Tenrec/{name}", text)
    return archive


def generate_file(path: str | Path, rows: int, file: str = "QK-video.csv", seed: int = 0) -> Path:
    """A large file of ``file``'s layout at ``path``, vectorised (for benchmarks): ~100 rows a user,
    2M videos, label rates near the real QK-video's (click 25%, like 2%, follow and share 0.5%),
    ``\\N`` in a tenth of ``video_category``, histories with ``0`` padding growing to the tenth slot.
    The histories are random per row, not per user: only the layout matters for timing."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {"user_id": np.sort(rng.integers(1, rows // 100 + 2, rows)), "item_id": rng.integers(1, 2_000_000, rows)}
    for name, rate in zip(COLUMNS[2:6], (0.25, 0.005, 0.02, 0.005)):
        columns[name] = (rng.random(rows) < rate).astype(np.int8)
    category = rng.integers(0, 2, rows).astype(str).astype(object)
    category[rng.random(rows) < 0.1] = MISSING
    columns["video_category"], columns["watching_times"] = category, rng.integers(0, 4, rows)
    columns["gender"], columns["age"] = rng.integers(0, 3, rows), rng.integers(0, 9, rows)
    if file == "ctr_data_1M.csv":
        for i, name in enumerate(HISTORY, start=1):
            items = rng.integers(1, 2_000_000, rows)
            items[rng.random(rows) < 0.03 * i] = 0
            columns[name] = items
    table = pa.table({name: pa.array(values) for name, values in columns.items()})
    path = Path(path)
    with open(path, "wb") as sink:
        sink.write((header(file) + "\n").encode())
        pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return path
