"""The KuaiRand recipes (Pure, 1K, 27K): generator-made downloads to Parquet splits, checked value by value; the
specs; parts; bad input; a model trained on the result."""

from __future__ import annotations

import csv
import datetime
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import small_experiment
from generators.kuairand import (
    PARTS_27K,
    RANDOM,
    STANDARD_EARLY,
    STANDARD_LATE,
    USERS,
    VIDEOS_BASIC,
    VIDEOS_STATISTIC,
    KuaiRandConfig,
    csv_texts,
    file_name,
    generate_download,
    joined_files,
    version_files,
    write_download,
)
from generators.kuairand import (
    STATISTIC_HEADER as VIDEOS_STATISTIC_HEADER,
)

from mtreclib.cli import main
from mtreclib.core.errors import DataError, UserError
from mtreclib.data.datasets import load_dataset
from mtreclib.recipes import Report, find_recipe, kuairand, run_recipe
from mtreclib.recipes.kuairand.files import VERSIONS, find_download
from mtreclib.training.experiment import run_experiment

CONFIG = KuaiRandConfig(users=40, videos=30, early_rows=500, late_rows=400, random_rows=200, seed=5)
SPLITS = ("train", "valid", "test")

def convert(data_dir: Path, name: str = "KuaiRandPure", **options: object) -> Report:
    """The recipe as ``mtrec preprocess`` runs it (without progress bars); what it did."""
    return run_recipe(name, data_dir, progress=False, **options)

FILES = [f"{prefix}{split}.parquet" for prefix in ("", "random_") for split in SPLITS]

# The publisher's columns, by what the recipe should make of them (written out here, not taken from the recipe).
USER_TEXT = ["user_active_degree", "follow_user_num_range", "fans_user_num_range", "friend_user_num_range", "register_days_range"]
USER_CODES = ["is_lowactive_period", "is_live_streamer", "is_video_author", *(f"onehot_feat{i}" for i in range(18))]
USER_COUNTS = ["follow_user_num", "fans_user_num", "friend_user_num", "register_days"]
VIDEO_TEXT = ["video_type", "upload_type"]
VIDEO_CODES = ["author_id", "visible_status", "server_width", "server_height", "music_id", "music_type"]
LABELS = ["is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "long_view", "is_profile_enter"]
OUTCOMES = ["play_time_ms", "profile_stay_time", "comment_stay_time"]
STATISTICS = VIDEOS_STATISTIC_HEADER.split(",")[1:]


def f32(value: str) -> float:
    return float(np.float32(float(value)))


def rows_of(text: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.decode()), strict=True))


def split_of(date: int) -> str:
    return "train" if date <= 20220421 else "valid" if date <= 20220428 else "test"


def day(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


def expected_files(texts: dict[str, bytes]) -> dict[str, list[dict]]:
    """Output rows by file, joined row by row from the CSV text: logs in file order, each with its user and video."""
    users = {int(r["user_id"]): r for r in rows_of(texts[USERS])}
    videos = {int(r["video_id"]): r for r in rows_of(texts[VIDEOS_BASIC])}
    statistics = {int(r["video_id"]): r for r in rows_of(texts[VIDEOS_STATISTIC])}
    out = {file: [] for file in FILES}
    for log, prefix in ((STANDARD_EARLY, ""), (STANDARD_LATE, ""), (RANDOM, "random_")):
        for row in rows_of(texts[log]):
            date = int(row["date"])
            user = users.get(int(row["user_id"]), {})
            video = videos.get(int(row["video_id"]), {})
            statistic = statistics.get(int(row["video_id"]), {})
            values = {name: int(row[name]) for name in ("user_id", "video_id", "time_ms", "date")}
            values["hour"] = int(row["hourmin"]) // 100
            values["tab"] = int(row["tab"])
            values["duration_ms"] = f32(row["duration_ms"])
            values |= {name: user.get(name) or None for name in USER_TEXT}
            values |= {name: int(float(user[name])) if user.get(name) else None for name in USER_CODES}
            values |= {name: f32(user[name]) if user.get(name) else None for name in USER_COUNTS}
            values |= {name: video.get(name) or None for name in VIDEO_TEXT}
            values |= {name: int(float(video[name])) if video.get(name) else None for name in VIDEO_CODES}
            values["video_duration"] = f32(video["video_duration"]) if video.get("video_duration") else None
            values["tag"] = [int(t) for t in video["tag"].split(",")] if video.get("tag") else ([] if video else None)
            if video.get("upload_dt"):
                log_day = datetime.date(date // 10000, date // 100 % 100, date % 100)
                values["video_age_days"] = float(max(0, (log_day - day(video["upload_dt"])).days))
            else:
                values["video_age_days"] = None
            values |= {f"stat_{name}": f32(statistic[name]) if statistic.get(name) else None for name in STATISTICS}
            values |= {name: int(row[name]) for name in LABELS + OUTCOMES}
            out[f"{prefix}{split_of(date)}.parquet"].append(values)
    return out


@pytest.fixture(scope="module")
def texts() -> dict[str, bytes]:
    return csv_texts(CONFIG)


@pytest.fixture(scope="module")
def expected(texts) -> dict[str, list[dict]]:
    return expected_files(texts)


def assert_no_output(data_dir: Path, dataset: str = "KuaiRandPure") -> None:
    assert not (data_dir / dataset).exists()
    assert not list(data_dir.glob(f".{dataset}.tmp*"))  # the output's and the feature tables' scratch folders


def read_rows(path: Path) -> list[dict]:
    table = pq.read_table(path)
    return [{k: v for k, v in row.items()} for row in table.to_pylist()]


LAYOUTS = {
    # name: (packed, where the download goes, relative to DATA_DIR)
    "archive in DATA_DIR": (True, "."),
    "archive in DATA_DIR/KuaiRandPure": (True, "KuaiRandPure"),
    "unpacked in DATA_DIR": (False, "."),
    "unpacked data/ in DATA_DIR/KuaiRandPure": (False, "KuaiRandPure"),
}


def test_the_generated_download_has_what_the_rules_are_about(texts, expected):
    """Gaps, float-written codes, quoted tag lists, uploads after the log day: the cases the expected rows cover."""
    rows = [r for file in FILES for r in expected[file]]
    assert any(r["onehot_feat4"] is None for r in rows) and any(r["video_duration"] is None for r in rows)
    assert any(r["tag"] == [] for r in rows) and any(len(r["tag"]) > 1 for r in rows)
    assert any(r["video_age_days"] is None for r in rows) and any(r["stat_like_cnt"] is None for r in rows)
    assert b',"(0,10]",' in texts[USERS] and b',720.0,' in texts[VIDEOS_BASIC]
    videos = {int(r["video_id"]): r for r in rows_of(texts[VIDEOS_BASIC])}
    later = [r for r in rows if videos[r["video_id"]]["upload_dt"] and day(videos[r["video_id"]]["upload_dt"]) > datetime.date(r["date"] // 10000, r["date"] // 100 % 100, r["date"] % 100)]
    assert later and all(r["video_age_days"] == 0 for r in later)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_download_converts_to_exactly_the_expected_rows(tmp_path, texts, expected, layout):
    packed, where = LAYOUTS[layout]
    written = write_download(tmp_path / where, texts, packed=packed)
    if layout.startswith("unpacked data/"):  # the data/ folder alone, moved up: DATA_DIR/KuaiRandPure/data/
        written.rename(tmp_path / where / "data")
    # In one layout, pieces far smaller than the files: rows cross piece and split boundaries, and
    # the feature tables are written in many record batches.
    chunks = {"chunk_bytes": 2048, "log_chunk_bytes": 8192, "batch_bytes": 1024} if layout == "archive in DATA_DIR" else {}
    result = convert(tmp_path, **chunks)
    folder = tmp_path / "KuaiRandPure"
    for file in FILES:
        assert read_rows(folder / file) == expected[file], file  # every value, in log-file order
    assert sum(len(expected[f]) for f in FILES[:3]) == CONFIG.early_rows + CONFIG.late_rows
    assert sum(len(expected[f]) for f in FILES[3:]) == CONFIG.random_rows
    assert len(expected["random_train.parquet"]) == 0 and all(len(expected[f]) for f in FILES if f != "random_train.parquet")
    assert {s: result.outputs[s].rows for s in SPLITS} == {s: len(expected[f"{s}.parquet"]) for s in SPLITS}
    assert not list(tmp_path.glob(".KuaiRandPure.tmp*"))
    if where == "KuaiRandPure":  # the download beside the output is left as it was
        assert (folder / ("KuaiRand-Pure.tar.gz" if packed else "data")).exists()


def test_rows_go_to_their_split_by_date(tmp_path, texts):
    write_download(tmp_path, texts)
    convert(tmp_path)
    periods = {"train": (20220408, 20220421), "valid": (20220422, 20220428), "test": (20220429, 20220508)}
    for split, (first, last) in periods.items():
        for prefix in ("", "random_"):
            dates = pq.read_table(tmp_path / "KuaiRandPure" / f"{prefix}{split}.parquet", columns=["date"]).column("date").to_numpy()
            assert ((dates >= first) & (dates <= last)).all()
            times = pq.read_table(tmp_path / "KuaiRandPure" / f"{prefix}{split}.parquet", columns=["time_ms"]).column("time_ms").to_numpy()
            beijing = datetime.timezone(datetime.timedelta(hours=8))
            for stamp, date in zip(times[:20], dates[:20]):
                assert int(datetime.datetime.fromtimestamp(stamp / 1000, beijing).strftime("%Y%m%d")) == date


def test_labels_are_0_1_int8_and_no_label_is_declared_to_imply_a_click(tmp_path, texts):
    write_download(tmp_path, texts)
    result = convert(tmp_path)
    table = pq.read_table(tmp_path / "KuaiRandPure" / "train.parquet")
    for name in LABELS:
        assert table.schema.field(name).type == pa.int8()
        assert set(table.column(name).to_pylist()) == {0, 1}
    # The generator's likes are independent of clicks, as the publisher's documentation allows:
    # such rows are counted (for the user to see) and no `implies` is declared.
    rows = [r for log in (STANDARD_EARLY, STANDARD_LATE) for r in rows_of(texts[log])]
    without = {name: sum(r[name] == "1" and r["is_click"] == "0" for r in rows) for name in LABELS[1:]}
    assert {label: result.counts[f"standard_without_click_{label}"] for label in LABELS[1:]} == without and without["is_like"] > 0
    spec = yaml.safe_load((tmp_path / "KuaiRandPure" / "dataset.yaml").read_text())
    assert "implies" not in spec


@pytest.mark.parametrize("spec_file, valid, test", [("dataset.yaml", "valid.parquet", "test.parquet"), ("random.yaml", "random_valid.parquet", "random_test.parquet")])
def test_the_specs_name_the_files_and_every_column_of_the_parquet_schema(tmp_path, texts, spec_file, valid, test):
    write_download(tmp_path, texts)
    convert(tmp_path)
    folder = tmp_path / "KuaiRandPure"
    text = (folder / spec_file).read_text()
    assert text.startswith("# KuaiRandPure: KuaiRand-Pure")
    spec = yaml.safe_load(text)
    assert set(spec) == {"name", "format", "train", "valid", "test", "categorical", "multi_valued", "numerical", "labels", "tasks", "group"}
    assert (spec["format"], spec["train"], spec["valid"], spec["test"]) == ("parquet", "train.parquet", valid, test)
    schema = pq.read_schema(folder / "train.parquet")
    for file in (spec["train"], spec["valid"], spec["test"]):
        assert pq.read_schema(folder / file) == schema
    names = {}
    for key in ("categorical", "multi_valued", "numerical"):
        for entry in spec[key]:
            assert set(entry) <= {"name", "role", "transform", "fill", "pooling"}
            names[entry["name"]] = (key, entry)
    for name, (key, entry) in names.items():
        kind = schema.field(name).type
        if key == "categorical":
            assert pa.types.is_int64(kind) or pa.types.is_string(kind), name
            assert entry["role"] in {"user", "item", "author", "context"}
        elif key == "multi_valued":
            assert pa.types.is_list(kind) and pa.types.is_int64(kind.value_type)
        else:
            assert pa.types.is_float32(kind), name
            assert entry.get("transform") in {"log1p", "standardize"}
    # The play time is a regression label, in seconds, log1p-transformed; not among the default tasks.
    play_time = {"name": "play_time", "column": "play_time_ms", "type": "regression", "scale": 0.001, "transform": "log1p"}
    assert spec["labels"] == [*LABELS, play_time] and set(spec["tasks"]) <= set(LABELS) and len(spec["tasks"]) >= 6
    assert spec["group"] == "user_id"
    roles = {entry["name"]: entry["role"] for entry in spec["categorical"] + spec["multi_valued"]}
    assert (roles["user_id"], roles["video_id"], roles["author_id"], roles["tag"], roles["hour"], roles["tab"]) == (
        "user", "item", "author", "item", "context", "context"
    )  # fmt: skip
    not_features = {"time_ms", "date", *LABELS, *OUTCOMES}  # outcomes are known only after the impression
    assert set(schema.names) == set(names) | not_features and not set(names) & not_features
    assert {n for n, (k, _) in names.items() if k == "numerical" and n.startswith("stat_")} == {f"stat_{c}" for c in STATISTICS}


def test_the_recipe_is_registered_under_its_dataset_name():
    recipe = find_recipe("KuaiRandPure")
    assert "KuaiRandPure" in recipe.names and recipe.download_page("KuaiRandPure") == "https://zenodo.org/records/10439422/files/KuaiRand-Pure.tar.gz"


def test_run_returns_rows_and_label_rates_per_split(tmp_path, texts, expected):
    write_download(tmp_path, texts)
    lines = run_recipe("KuaiRandPure", tmp_path, progress=False).lines()
    train = expected["train.parquet"]
    rate = sum(r["is_click"] for r in train) / len(train)
    assert f"train: {len(train):,} rows; is_click {100 * rate:.3g}%," in lines[0]
    assert any(line.startswith(f"random_test: {len(expected['random_test.parquet']):,} rows") for line in lines)
    assert "rows/s" in lines[-1] and "random.yaml" in lines[-1]


def test_rows_whose_user_or_video_has_no_feature_row_get_nulls_and_are_counted(tmp_path, texts):
    edited = dict(texts)
    lines = texts[USERS].decode().splitlines(keepends=True)
    dropped_user = int(lines[1].split(",")[0])
    edited[USERS] = "".join(lines[:1] + lines[2:]).encode()
    lines = texts[VIDEOS_BASIC].decode().splitlines(keepends=True)
    dropped_video = int(lines[3].split(",")[0])
    edited[VIDEOS_BASIC] = "".join(lines[:3] + lines[4:]).encode()
    write_download(tmp_path, edited)
    result = convert(tmp_path)
    expected = expected_files(edited)
    for file in FILES:
        assert read_rows(tmp_path / "KuaiRandPure" / file) == expected[file]
    rows = [r for log in (STANDARD_EARLY, STANDARD_LATE) for r in rows_of(texts[log])]
    assert result.counts["standard_no_user"] == sum(int(r["user_id"]) == dropped_user for r in rows) > 0
    assert result.counts["standard_no_video"] == sum(int(r["video_id"]) == dropped_video for r in rows) > 0
    assert result.counts["standard_no_statistics"] == 0
    assert any("without a user row" in line for line in result.lines())


def test_a_failed_run_leaves_the_earlier_output_as_it_was(tmp_path, texts):
    write_download(tmp_path, texts)
    convert(tmp_path)
    folder = tmp_path / "KuaiRandPure"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    broken = dict(texts)
    broken[STANDARD_LATE] = _edit(texts[STANDARD_LATE], 2, "user_id", "x")
    write_download(tmp_path, broken)
    with pytest.raises(DataError, match="line 2, column user_id"):
        convert(tmp_path)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not list(tmp_path.glob(".KuaiRandPure.tmp*"))


def test_the_streamed_generator_writes_the_same_files_as_the_small_one(tmp_path, texts):
    config = KuaiRandConfig(**{**CONFIG.__dict__, "block_rows": 64})  # blocks of whole users
    data = generate_download(tmp_path, config, packed=False)
    for name, text in texts.items():
        written = (data / name).read_bytes()
        if name in (STANDARD_EARLY, STANDARD_LATE, RANDOM):  # other random draws per block; same layout and order rules
            rows = rows_of(written)
            assert len(rows) == len(rows_of(text)) and written.split(b"\n", 1)[0] == text.split(b"\n", 1)[0]
            keys = [(int(r["user_id"]), int(r["time_ms"])) for r in rows]
            assert keys == sorted(keys)
        else:
            assert written == text


# -- bad input ---------------------------------------------------------------------------------


def _edit(text: bytes, line: int, column: str | None, value: str | None) -> bytes:
    """``text`` with 1-based ``line``'s ``column`` set to ``value`` (None: the value dropped)."""
    lines = text.decode().splitlines()
    header = lines[0].split(",")
    values = next(csv.reader([lines[line - 1]]))
    if value is None:
        del values[header.index(column) if column else -1]
    else:
        values[header.index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    lines[line - 1] = out.getvalue()
    return ("\n".join(lines) + "\n").encode()


def _insert_empty_line(text: bytes, after: int) -> bytes:
    lines = text.decode().splitlines()
    return ("\n".join(lines[:after] + [""] + lines[after:]) + "\n").encode()


def _append_value(text: bytes, line: int) -> bytes:
    lines = text.decode().splitlines()
    lines[line - 1] += ",0"
    return ("\n".join(lines) + "\n").encode()


def _rename_column(text: bytes, old: str, new: str) -> bytes:
    head, rest = text.split(b"\n", 1)
    return head.replace(old.encode(), new.encode(), 1) + b"\n" + rest


BAD_TEXT = {
    # case: (file, edit, message, line, column)
    "log row with a value too few": (STANDARD_EARLY, lambda t: _edit(t, 40, None, None), "expected 19 values, found 18", 40, None),
    "log value not an integer": (STANDARD_LATE, lambda t: _edit(t, 7, "is_like", "x"), "expected an integer, found 'x'", 7, "is_like"),
    "log value missing": (RANDOM, lambda t: _edit(t, 12, "time_ms", ""), "missing value; expected an integer", 12, "time_ms"),
    "label outside 0/1": (STANDARD_EARLY, lambda t: _edit(t, 301, "is_click", "2"), "expected 0 or 1, found 2", 301, "is_click"),
    "is_rand outside 0/1": (RANDOM, lambda t: _edit(t, 3, "is_rand", "-1"), "expected 0 or 1, found -1", 3, "is_rand"),
    "hourmin not a time": (STANDARD_LATE, lambda t: _edit(t, 100, "hourmin", "2460"), "expected a time of day HHMM (0 .. 2359), found 2460", 100, "hourmin"),
    "date not a date": (STANDARD_EARLY, lambda t: _edit(t, 9, "date", "20220431"), "expected a date YYYYMMDD, found 20220431", 9, "date"),
    "negative duration": (STANDARD_LATE, lambda t: _edit(t, 5, "duration_ms", "-5"), "expected a duration >= 0, found -5", 5, "duration_ms"),
    "empty line in a log": (RANDOM, lambda t: _insert_empty_line(t, 20), "an empty line; expected 19 values", 21, None),
    "log header renamed": (STANDARD_EARLY, lambda t: _rename_column(t, "is_like", "is_liked"), "expected the column 'is_like' here, found 'is_liked'", 1, "is_like"),
    "log with a header only": (RANDOM, lambda t: t.split(b"\n", 1)[0] + b"\n", "the file has a header but no rows", None, None),
    "empty user file": (USERS, lambda t: b"", "the file is empty; expected the header user_id,user_active_degree", None, None),
    "user id twice": (USERS, lambda t: _edit(t, 30, "user_id", next(csv.reader([t.decode().splitlines()[4]]))[0]), "has a second row (the first is line 5)", 30, "user_id"),
    "user code not whole": (USERS, lambda t: _edit(t, 8, "onehot_feat3", "2.5"), "expected an integer code, found 2.5", 8, "onehot_feat3"),
    "user count not a number": (USERS, lambda t: _edit(t, 11, "follow_user_num", "many"), "expected a number, found 'many'", 11, "follow_user_num"),
    "user with a value too many": (USERS, lambda t: _append_value(t, 2), "expected 31 values, found 32", 2, None),
    "tag not a list of ids": (VIDEOS_BASIC, lambda t: _edit(t, 6, "tag", "12;65"), "expected comma-separated integer tag ids, found '12;65'", 6, "tag"),
    "upload date not a date": (VIDEOS_BASIC, lambda t: _edit(t, 4, "upload_dt", "2020-02-30"), "expected a date YYYY-MM-DD, found '2020-02-30'", 4, "upload_dt"),
    "video id missing": (VIDEOS_BASIC, lambda t: _edit(t, 3, "video_id", ""), "missing value; expected an integer", 3, "video_id"),
    "statistic not finite": (VIDEOS_STATISTIC, lambda t: _edit(t, 10, "like_cnt", "inf"), "expected a finite number, found inf", 10, "like_cnt"),
    "statistic count at or below -1": (VIDEOS_STATISTIC, lambda t: _edit(t, 2, "show_cnt", "-3"), "expected a count (>= 0; log1p needs > -1), found -3.0", 2, "show_cnt"),
}


# Every case in the archive; two in the unpacked folder (reading after opening is the same).
BAD_TEXT_CASES = [(case, True) for case in BAD_TEXT] + [("log value not an integer", False), ("tag not a list of ids", False)]


@pytest.mark.parametrize("case, packed", BAD_TEXT_CASES, ids=[f"{c} ({'archive' if p else 'unpacked'})" for c, p in BAD_TEXT_CASES])
def test_bad_rows_stop_with_one_line_naming_file_line_and_column_and_write_nothing(tmp_path, texts, case, packed):
    csv_name, edit, message, line, column = BAD_TEXT[case]
    files = dict(texts)
    files[csv_name] = edit(files[csv_name])
    write_download(tmp_path, files, packed=packed)
    with pytest.raises(DataError) as error:
        run_recipe("KuaiRandPure", tmp_path, progress=False)
    text = str(error.value)
    assert "\n" not in text and message in text, text
    where = f"KuaiRand-Pure.tar.gz > KuaiRand-Pure/data/{csv_name}" if packed else f"KuaiRand-Pure/data/{csv_name}"
    assert text.startswith(str(tmp_path)) and f"{where}" in text, text
    if line is not None:
        assert f", line {line}" in text, text
    if column is not None:
        assert f", column {column}:" in text, text
    assert_no_output(tmp_path)


def test_logs_without_a_split_s_days_stop_naming_the_period(tmp_path, texts):
    files = dict(texts)
    lines = texts[STANDARD_LATE].decode().splitlines(keepends=True)
    files[STANDARD_LATE] = "".join(lines[:1] + [r for r in lines[1:] if int(r.split(",")[2]) <= 20220428]).encode()
    write_download(tmp_path, files)
    with pytest.raises(DataError, match=r"KuaiRand-Pure.tar.gz: .* have no rows dated in the test period \(04-29..05-08\)"):
        run_recipe("KuaiRandPure", tmp_path, progress=False)
    assert_no_output(tmp_path)


def _archive_bytes(tmp_path: Path, texts: dict[str, bytes]) -> bytes:
    return write_download(tmp_path / "good", texts).read_bytes()


BAD_ARCHIVES = {
    "truncated": lambda b: b[: len(b) * 3 // 5],
    "corrupt in the middle": lambda b: b[: len(b) // 2] + bytes(4096) + b[len(b) // 2 + 4096 :],
    "not a gzip file": lambda b: b"<html>Zenodo is down</html>\n" * 10,
}


@pytest.mark.parametrize("case", list(BAD_ARCHIVES))
def test_a_damaged_archive_stops_with_one_line_naming_it_and_writes_nothing(tmp_path, texts, case):
    (tmp_path / "KuaiRand-Pure.tar.gz").write_bytes(BAD_ARCHIVES[case](_archive_bytes(tmp_path, texts)))
    with pytest.raises(DataError) as error:
        run_recipe("KuaiRandPure", tmp_path, progress=False)
    text = str(error.value)
    assert "\n" not in text and text.startswith(str(tmp_path / "KuaiRand-Pure.tar.gz")) and "corrupt or truncated" in text, text
    assert "47,432,272 bytes" in text
    assert_no_output(tmp_path)


def test_an_archive_without_a_file_names_the_file(tmp_path, texts):
    files = {name: text for name, text in texts.items() if name != USERS}
    write_download(tmp_path, files)
    with pytest.raises(DataError, match=r"KuaiRand-Pure.tar.gz: holds no data/user_features_pure.csv \(it holds KuaiRand-Pure, "):
        run_recipe("KuaiRandPure", tmp_path, progress=False)
    assert_no_output(tmp_path)


def test_no_download_is_a_user_error_saying_what_where_and_where_from(tmp_path):
    with pytest.raises(UserError) as error:
        run_recipe("KuaiRandPure", tmp_path, progress=False)
    text = str(error.value)
    assert "KuaiRand-Pure.tar.gz not found" in text and str(tmp_path / "KuaiRandPure" / "KuaiRand-Pure.tar.gz") in text
    assert str(tmp_path / "data") in text and "https://zenodo.org/records/10439422/files/KuaiRand-Pure.tar.gz" in text
    assert not isinstance(error.value, DataError) and "\n" not in text
    assert_no_output(tmp_path)


def test_an_unpacked_folder_missing_a_file_names_it(tmp_path, texts):
    files = {name: text for name, text in texts.items() if name != VIDEOS_STATISTIC}
    folder = write_download(tmp_path, files, packed=False)
    with pytest.raises(UserError, match=f"video_features_statistic_pure.csv not found in {folder}"):
        run_recipe("KuaiRandPure", tmp_path, progress=False)
    assert_no_output(tmp_path)


# -- the feature tables ------------------------------------------------------------------------


def test_the_feature_tables_are_memory_mapped_not_held(tmp_path):
    """27K's video tables are 23 GB of CSV: they go to files and are mapped, whatever their size."""
    config = KuaiRandConfig(users=50, videos=1000, early_rows=20, late_rows=20, random_rows=20, seed=2)
    texts = csv_texts(config)
    write_download(tmp_path, texts, packed=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = pa.total_allocated_bytes()
    tables = kuairand.read_tables(find_download(tmp_path, VERSIONS["KuaiRandPure"]), scratch, chunk_bytes=1 << 15, batch_bytes=1 << 15)
    statistics = tables["video_features_statistic"]
    size = sum(batch.nbytes for batch in statistics.batches)
    assert size > 200_000 and len(statistics.batches) > 3
    assert pa.total_allocated_bytes() - before < size / 10  # the batches' memory is the file's, not Arrow's
    assert isinstance(statistics.ids, np.memmap) and isinstance(statistics.rows, np.memmap)
    # Found by id, across batches, in the order asked; nulls for an unknown id.
    rows = {int(r["video_id"]): r for r in rows_of(texts[VIDEOS_STATISTIC])}
    asked = np.array([999, 5, 10_000, 0, 734, 5])
    position, found = statistics.positions(asked)
    assert found.tolist() == [True, True, False, True, True, True]
    taken = statistics.take(position, found).column("stat_show_cnt").to_pylist()
    assert taken == [f32(rows[int(i)]["show_cnt"]) if i in rows and rows[int(i)]["show_cnt"] else None for i in asked]


# -- KuaiRand-1K and KuaiRand-27K ----------------------------------------------------------------

VERSION_OF = {"KuaiRand1K": "1K", "KuaiRand27K": "27K"}
URLS = {
    "KuaiRandPure": "https://zenodo.org/records/10439422/files/KuaiRand-Pure.tar.gz",
    "KuaiRand1K": "https://zenodo.org/records/10439422/files/KuaiRand-1K.tar.gz",
    "KuaiRand27K": "https://zenodo.org/records/10439422/files/KuaiRand-27K.tar.gz",
}
PARTS = {"KuaiRand1K": (), "KuaiRand27K": PARTS_27K}


def version_texts(dataset: str, texts: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """The files of ``dataset``'s download made of Pure's ``texts`` (default: CONFIG's)."""
    return version_files(texts or csv_texts(CONFIG), VERSION_OF[dataset], PARTS[dataset])


def write_version(tmp_path: Path, dataset: str, files: dict[str, bytes], *, packed: bool = True) -> Path:
    return write_download(tmp_path, files, packed=packed, version=VERSION_OF[dataset])


def test_the_generator_names_and_cuts_the_files_as_the_publisher_does(texts):
    files = version_texts("KuaiRand27K", texts)
    assert sorted(files) == sorted(
        ["log_random_4_22_to_5_08_27k.csv", "user_features_27k.csv", "video_features_basic_27k.csv"]
        + [f"log_standard_4_08_to_4_21_27k_part{n}.csv" for n in (1, 2)]
        + [f"log_standard_4_22_to_5_08_27k_part{n}.csv" for n in (1, 2)]
        + [f"video_features_statistic_27k_part{n}.csv" for n in (1, 2, 3)]
    )
    header = texts[STANDARD_EARLY].split(b"\n", 1)[0]
    assert all(files[f"log_standard_4_08_to_4_21_27k_part{n}.csv"].startswith(header + b"\n") for n in (1, 2))
    assert joined_files(files, "27K") == texts  # the parts hold the whole file's rows, in order
    assert sorted(version_texts("KuaiRand1K", texts)) == sorted(file_name(name, "1K") for name in texts)


CONVERSIONS = [("KuaiRand1K", True), ("KuaiRand1K", False), ("KuaiRand27K", True), ("KuaiRand27K", False)]


@pytest.mark.parametrize("dataset, packed", CONVERSIONS, ids=[f"{d}-{'archive' if p else 'unpacked'}" for d, p in CONVERSIONS])
def test_1k_and_27k_convert_to_exactly_the_rows_of_the_same_data_as_pure(tmp_path, texts, expected, dataset, packed):
    write_version(tmp_path, dataset, version_texts(dataset, texts), packed=packed)
    # Small pieces and batches: rows cross piece, part and split boundaries.
    result = convert(tmp_path, dataset, chunk_bytes=2048, log_chunk_bytes=8192, batch_bytes=1024)
    folder = tmp_path / dataset
    for file in FILES:
        assert read_rows(folder / file) == expected[file], file  # every value, in log-file order (parts in part order)
    assert {s: result.outputs[s].rows for s in SPLITS} == {s: len(expected[f"{s}.parquet"]) for s in SPLITS}
    assert (result.counts["users"], result.counts["videos"]) == (CONFIG.users, CONFIG.videos)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES, "dataset.yaml", "random.yaml"])
    assert not list(tmp_path.glob(f".{dataset}.tmp*"))


@pytest.mark.parametrize("dataset", ["KuaiRand1K", "KuaiRand27K"])
def test_1k_and_27k_specs_name_their_version_and_take_user_and_video_ids_as_they_are(tmp_path, texts, dataset):
    write_version(tmp_path, dataset, version_texts(dataset, texts))
    convert(tmp_path, dataset)
    archive = VERSION_OF[dataset]
    pure_specs = tmp_path / "pure"
    write_download(pure_specs, texts)
    convert(pure_specs)
    for spec_file, name in (("dataset.yaml", dataset), ("random.yaml", f"{dataset}-random")):
        text = (tmp_path / dataset / spec_file).read_text()
        assert text.startswith(f"# {dataset}: KuaiRand-{archive} (Gao et al.") and f"KuaiRand-{archive}.tar.gz" in text
        spec = yaml.safe_load(text)
        assert spec["name"] == name
        vocabularies = {entry["name"]: entry.get("vocabulary") for entry in spec["categorical"]}
        assert vocabularies["user_id"] == vocabularies["video_id"] == "identity"
        assert {n for n, v in vocabularies.items() if v} == {"user_id", "video_id"}  # the others are built
        # Apart from the name and the two vocabularies, the same spec as Pure's.
        pure = yaml.safe_load((pure_specs / "KuaiRandPure" / spec_file).read_text())
        for entry in spec["categorical"]:
            entry.pop("vocabulary", None)
        assert {**spec, "name": None} == {**pure, "name": None}
    pure = yaml.safe_load((pure_specs / "KuaiRandPure" / "dataset.yaml").read_text())
    assert all("vocabulary" not in entry for entry in pure["categorical"])  # Pure: built, as before


@pytest.mark.parametrize("dataset", ["KuaiRandPure", "KuaiRand1K", "KuaiRand27K"])
def test_each_version_is_registered_with_its_own_download(dataset):
    recipe = find_recipe(dataset)
    assert recipe is find_recipe("KuaiRandPure") and recipe.download_page(dataset) == URLS[dataset]  # one recipe, each version its download


@pytest.mark.parametrize("dataset, packed", [("KuaiRand1K", False), ("KuaiRand27K", True)])
def test_the_cli_converts_and_a_model_trains_on_the_result_with_identity_ids(tmp_path, texts, capsys, dataset, packed):
    write_version(tmp_path, dataset, version_texts(dataset, texts), packed=packed)
    assert main(["preprocess", "--dataset", dataset, "--data-dir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wrote train.parquet" in out and URLS[dataset] in out
    data = load_dataset(dataset, tmp_path, progress=False)
    schema = data.schema
    assert list(schema.task_names) == [*LABELS, "play_time"] and schema.bag_num == 1
    # Identity ids: no list of values, only the largest training id; the vocabulary is that + 2
    # (the last slot for larger ids).
    train = pq.read_table(tmp_path / dataset / "train.parquet", columns=["user_id", "video_id"])
    dims = dict(zip(schema.field_names, schema.field_dims))
    encoders = {e["spec"]["name"]: e for e in data.encoding["categorical"]}
    for name in ("user_id", "video_id"):
        largest = max(train.column(name).to_pylist())
        assert "values" not in encoders[name] and encoders[name]["max_id"] == largest and dims[name] == largest + 2
    assert "values" in encoders["author_id"]  # the other fields' vocabularies are built
    config = small_experiment("mmoe", dataset=dataset, data_dir=str(tmp_path), epochs=1, max_steps=2, batch_size=64, patience=0)
    record = run_experiment(config, dataset=data, announce=False)
    tasks = yaml.safe_load((tmp_path / dataset / "dataset.yaml").read_text())["tasks"]
    assert record.steps == 2 and list(record.tasks) == tasks and all(0 <= m.auc <= 1 or m.auc != m.auc for m in record.tasks.values())


def test_play_time_trains_as_a_regression_task_beside_binary_ones(tmp_path, texts, capsys):
    """The acceptance run: preprocess, then train is_click, long_view and the play time; the results have its RMSE and MAE, and is_click's GAUC by user."""
    write_download(tmp_path, texts)
    assert main(["preprocess", "--dataset", "KuaiRandPure", "--data-dir", str(tmp_path), "--no-progress"]) == 0
    data = load_dataset("KuaiRandPure", tmp_path, progress=False).select_tasks(("is_click", "long_view", "play_time"))
    assert data.schema.task_types == ("binary", "binary", "regression")
    # The stored target is log1p of the play time in seconds, row by row.
    played = pq.read_table(tmp_path / "KuaiRandPure" / "test.parquet", columns=["play_time_ms"]).column(0).to_numpy()
    np.testing.assert_allclose(data.test.label_rows()[:, 2], np.log1p(played / 1000), rtol=1e-6)
    results = tmp_path / "results.json"
    assert main(["train", "--dataset", "KuaiRandPure", "--data-dir", str(tmp_path), "--tasks", "is_click,long_view,play_time",
                 "--embed-dim", "4", "--batch-size", "64", "--max-steps", "3", "--no-save", "--no-progress",
                 "--results", str(results)]) == 0  # fmt: skip
    assert "play_time" in capsys.readouterr().out
    tasks = json.loads(results.read_text())["tasks"]
    assert set(tasks["play_time"]) == {"rmse", "mae"} and set(tasks["is_click"]) >= {"auc", "logloss", "gauc"}
    assert 0 < tasks["play_time"]["mae"] <= tasks["play_time"]["rmse"]
    # GAUC grouped by user (the recipe's group): every test user is used or skipped.
    users = len(set(pq.read_table(tmp_path / "KuaiRandPure" / "test.parquet", columns=["user_id"]).column(0).to_pylist()))
    assert tasks["is_click"]["gauc_groups"] + tasks["is_click"]["gauc_skipped"] == users


def test_the_streamed_generator_cuts_the_same_parts(tmp_path):
    config = KuaiRandConfig(**{**CONFIG.__dict__, "version": "27K", "parts": PARTS_27K})
    data = generate_download(tmp_path, config, packed=False)
    small = csv_texts(config)
    assert sorted(p.name for p in data.iterdir()) == sorted(small)
    for name, text in small.items():
        assert (data / name).read_bytes() == text, name  # one block: the same draws
    archive = generate_download(tmp_path / "packed", config)
    assert archive.name == "KuaiRand-27K.tar.gz"
    convert(tmp_path / "packed", "KuaiRand27K")
    assert read_rows(tmp_path / "packed" / "KuaiRand27K" / "test.parquet") == expected_files(joined_files(small, "27K"))["test.parquet"]


# -- parts: bad input --------------------------------------------------------------------------


def _without(files: dict[str, bytes], name: str) -> dict[str, bytes]:
    return {n: t for n, t in files.items() if n != name}


@pytest.mark.parametrize("packed", [True, False], ids=["archive", "unpacked"])
def test_a_missing_part_is_named(tmp_path, texts, packed):
    files = _without(version_texts("KuaiRand27K", texts), "video_features_statistic_27k_part2.csv")
    write_version(tmp_path, "KuaiRand27K", files, packed=packed)
    error = DataError if packed else UserError
    held = "holds video_features_statistic_27k_part1.csv, video_features_statistic_27k_part3.csv"
    with pytest.raises(error, match=f"{held} but not video_features_statistic_27k_part2.csv"):
        run_recipe("KuaiRand27K", tmp_path, progress=False)
    assert_no_output(tmp_path, "KuaiRand27K")


@pytest.mark.parametrize("packed", [True, False], ids=["archive", "unpacked"])
def test_a_whole_file_beside_its_parts_is_refused(tmp_path, texts, packed):
    files = version_texts("KuaiRand27K", texts)
    files["log_standard_4_22_to_5_08_27k.csv"] = texts[STANDARD_LATE]
    write_version(tmp_path, "KuaiRand27K", files, packed=packed)
    with pytest.raises(UserError, match="holds both log_standard_4_22_to_5_08_27k.csv and log_standard_4_22_to_5_08_27k_part1.csv; keep either"):
        run_recipe("KuaiRand27K", tmp_path, progress=False)
    assert_no_output(tmp_path, "KuaiRand27K")


def test_a_27k_archive_without_a_file_names_it(tmp_path, texts):
    write_version(tmp_path, "KuaiRand27K", _without(version_texts("KuaiRand27K", texts), "user_features_27k.csv"))
    message = r"KuaiRand-27K.tar.gz: holds no data/user_features_27k.csv \(it holds KuaiRand-27K, .*the KuaiRand-27K archive from "
    with pytest.raises(DataError, match=message + URLS["KuaiRand27K"]):
        run_recipe("KuaiRand27K", tmp_path, progress=False)
    assert_no_output(tmp_path, "KuaiRand27K")


def test_a_pure_download_is_not_taken_for_1k(tmp_path, texts):
    write_download(tmp_path, texts)
    with pytest.raises(UserError, match=r"KuaiRand-1K.tar.gz not found.*https://zenodo.org/records/10439422/files/KuaiRand-1K.tar.gz"):
        run_recipe("KuaiRand1K", tmp_path, progress=False)
    assert_no_output(tmp_path, "KuaiRand1K")


@pytest.mark.parametrize("packed", [True, False], ids=["archive", "unpacked"])
def test_a_bad_value_in_a_part_names_the_part_and_its_own_line(tmp_path, texts, packed):
    files = version_texts("KuaiRand27K", texts)
    part = "log_standard_4_22_to_5_08_27k_part2.csv"
    files[part] = _edit(files[part], 3, "is_like", "x")
    write_version(tmp_path, "KuaiRand27K", files, packed=packed)
    with pytest.raises(DataError) as error:
        run_recipe("KuaiRand27K", tmp_path, progress=False)
    where = "KuaiRand-27K.tar.gz > KuaiRand-27K/data/" if packed else "KuaiRand-27K/data/"
    assert f"{where}{part}, line 3, column is_like: expected an integer, found 'x'" in str(error.value)
    assert_no_output(tmp_path, "KuaiRand27K")


def test_a_part_without_its_header_is_named(tmp_path, texts):
    files = version_texts("KuaiRand27K", texts)
    part = "video_features_statistic_27k_part3.csv"
    files[part] = files[part].split(b"\n", 1)[1]
    write_version(tmp_path, "KuaiRand27K", files)
    with pytest.raises(DataError, match=rf"{part}, line 1, column video_id: expected the column 'video_id' here, found '\d+'"):
        run_recipe("KuaiRand27K", tmp_path, progress=False)
    assert_no_output(tmp_path, "KuaiRand27K")


def test_a_video_in_two_parts_names_both_files(tmp_path, texts):
    files = version_texts("KuaiRand27K", texts)
    first, second = "video_features_statistic_27k_part1.csv", "video_features_statistic_27k_part3.csv"
    video = next(csv.reader([files[first].decode().splitlines()[2]]))[0]
    files[second] = _edit(files[second], 4, "video_id", video)
    write_version(tmp_path, "KuaiRand27K", files, packed=False)
    with pytest.raises(DataError, match=rf"{second}, line 4, column video_id: video_id {video} has a second row \(the first is line 3 of .*{first}\)"):
        run_recipe("KuaiRand27K", tmp_path, progress=False)
    assert_no_output(tmp_path, "KuaiRand27K")
