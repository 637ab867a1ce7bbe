"""`mtrec preprocess`: generator-made raw downloads to processed rows, checked value by value; bad input."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from generators.aliexpress import RawConfig, columns_of, csv_bytes, raw_arrays, write_download

from mtreclib.cli import main
from mtreclib.core.errors import DataError, UserError
from mtreclib.data.processed import COLUMNS
from mtreclib.recipes.aliexpress import preprocess

CONFIG = RawConfig(train_items=400, test_items=150, items_per_page=9, seed=3)

# The mapping of the issue, written out by 1-based raw column number, independently of the code.
USER_CATEGORICAL = [2, 3, 4, 5, 6, 7, 8, 32, 33]
ITEM_CATEGORICAL = [19, 34, 35, 36, 40, 41, 42]
USER_NUMERICAL = list(range(9, 32))
ITEM_NUMERICAL = [i for i in range(2, 49) if i not in ITEM_CATEGORICAL]


def expected_rows(users: np.ndarray, items: np.ndarray) -> list[list[float]]:
    """Processed rows by a plain per-row join: items in file order, each with its page's user row."""
    by_id = {int(row[0]): row for row in users}
    rows = []
    for item in items:
        user = by_id[int(item[0])]
        label = int(item[48])
        rows.append(
            [item[0]]
            + [user[i - 1] for i in USER_CATEGORICAL]
            + [item[i - 1] for i in ITEM_CATEGORICAL]
            + [user[i - 1] for i in USER_NUMERICAL]
            + [item[i - 1] for i in ITEM_NUMERICAL]
            + [float(label >= 1), float(label == 2)]
        )
    return rows


def read_rows(path: Path) -> tuple[list[str], list[list[float]]]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [[float(v) for v in row] for row in reader]


def texts(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {kind: csv_bytes(rows, columns_of(kind)) for kind, rows in arrays.items()}


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return raw_arrays(CONFIG)


def assert_no_output(data_dir: Path) -> None:
    folder = data_dir / "AliExpress_NL"
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert not [name for name in left if name.startswith(("train.csv", "test.csv"))], left


@pytest.mark.parametrize(
    "layout, outer_compression",
    [("outer", zipfile.ZIP_DEFLATED), ("outer", zipfile.ZIP_STORED), ("inner", None), ("csv", None)],
)
def test_generated_download_preprocesses_to_exactly_the_expected_rows(tmp_path, arrays, layout, outer_compression):
    kwargs = {} if outer_compression is None else {"outer_compression": outer_compression}
    write_download(tmp_path, "NL", texts(arrays), layout=layout, **kwargs)
    reports = preprocess(tmp_path, "AliExpress_NL", progress=False, chunk_bytes=8192)  # many pieces per file
    for split in ("train", "test"):
        users, items = arrays[f"user_{split}"], arrays[f"item_{split}"]
        header, rows = read_rows(tmp_path / "AliExpress_NL" / f"{split}.csv")
        assert header == list(COLUMNS)
        assert rows == expected_rows(users, items)  # every value, exactly, in item-file order
        report = reports[split]
        assert (report.pages, report.items, report.rows, report.orphans) == (len(users), len(items), len(items), 0)
        assert report.clicks == int((items[:, 48] >= 1).sum()) and report.conversions == int((items[:, 48] == 2).sum())
    assert not list((tmp_path / "AliExpress_NL").glob("*.tmp*"))


def test_the_generator_shuffles_pages_and_gives_test_ids_beyond_training(arrays):
    users, items = arrays["user_train"], arrays["item_train"]
    page_order = items[np.r_[True, items[1:, 0] != items[:-1, 0]], 0]
    assert not np.array_equal(users[:, 0], page_order), "user rows must not simply follow the item order"
    assert set(users[:, 0]) == set(page_order)
    item_19 = 18
    assert arrays["item_test"][:, item_19].max() > items[:, item_19].max()
    assert set(np.unique(items[:, 48])) == {0, 1, 2}


def test_the_command_preprocesses_and_trains_on_the_result(tmp_path, arrays, capsys):
    write_download(tmp_path, "NL", texts(arrays))
    assert main(["preprocess", "--dataset", "AliExpress_NL", "--data-dir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"train: {len(arrays['item_train']):,} rows" in out
    status = main(["train", "--dataset", "AliExpress_NL", "--data-dir", str(tmp_path), "--epochs", "1", "--max-steps", "1",
                   "--batch-size", "64", "--embed-dim", "4", "--no-save", "--no-progress"])
    assert status == 0 and "conversion" in capsys.readouterr().out


def _edit(text: bytes, line: int, column: int | None, value: str | None) -> bytes:
    """``text`` with 1-based ``line``'s 1-based ``column`` set to ``value`` (None: drop the column)."""
    lines = text.decode().splitlines()
    values = lines[line - 1].split(",")
    if value is None:
        del values[(column or len(values)) - 1]
    else:
        values[column - 1] = value
    lines[line - 1] = ",".join(values)
    return ("\n".join(lines) + "\n").encode()


BAD_TEXT = {
    # case: (file, edit of the text, message, line, column)
    "item with a missing column": ("item_train", lambda t: _edit(t, 37, None, None), "expected 49 values, found 48", 37, None),
    "user with a missing column": ("user_test", lambda t: _edit(t, 5, None, None), "expected 33 values, found 32", 5, None),
    "non-integer item id": ("item_train", lambda t: _edit(t, 200, 35, "2.5"), "expected an integer, found '2.5'", 200, "item_35"),
    "non-integer user id": ("user_train", lambda t: _edit(t, 3, 33, "x"), "expected an integer, found 'x'", 3, "user_33"),
    "negative id": ("item_test", lambda t: _edit(t, 9, 19, "-4"), "expected an id in 0..", 9, "item_19"),
    "text in a feature": ("item_test", lambda t: _edit(t, 12, 20, "n/a"), "expected a number, found 'n/a'", 12, "item_20"),
    "missing feature": ("user_train", lambda t: _edit(t, 7, 10, ""), "missing value", 7, "user_10"),
    "label 3": ("item_train", lambda t: _edit(t, 321, 49, "3"), "expected a label 0 (nothing), 1 (click) or 2 (purchase), found 3", 321, "item_49"),
    "empty item file": ("item_test", lambda t: b"", "the file is empty; expected rows of 49 values", None, None),
    "empty user file": ("user_train", lambda t: b"", "the file is empty; expected rows of 33 values", None, None),
    "empty line": ("item_train", lambda t: t.replace(b"\n", b"\n\n", 3)[: len(t) + 3], "an empty line; expected 49 values", 2, None),
}


@pytest.mark.parametrize("case", list(BAD_TEXT))
def test_bad_raw_rows_stop_with_one_line_naming_file_line_and_column_and_write_nothing(tmp_path, arrays, case, capsys):
    kind, edit, message, line, column = BAD_TEXT[case]
    files = texts(arrays)
    files[kind] = edit(files[kind])
    write_download(tmp_path, "NL", files)
    status = main(["preprocess", "--dataset", "AliExpress_NL", "--data-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"nl_{kind}.zip > nl_{kind}.csv" in err and message in err, err
    if line is not None:
        assert f", line {line}" in err
    if column is not None:
        assert f", column {column}:" in err
    assert not (tmp_path / "AliExpress_NL").exists()


def test_items_without_a_user_row_are_counted_and_stop_the_run_unless_dropped(tmp_path, arrays):
    users = arrays["user_train"]
    missing = users[[4, 11]]  # two pages lose their user row
    reduced = dict(arrays, user_train=np.delete(users, [4, 11], axis=0))
    orphan = np.isin(arrays["item_train"][:, 0], missing[:, 0])
    first_line = int(np.flatnonzero(orphan)[0]) + 1
    write_download(tmp_path, "NL", texts(reduced), layout="inner")
    with pytest.raises(DataError) as error:
        preprocess(tmp_path, "AliExpress_NL", progress=False, chunk_bytes=4096)
    text = str(error.value)
    assert f"{orphan.sum():,} of {len(orphan):,} item rows have a search id with no row in" in text
    assert f"line {first_line}, column item_1" in text and "--drop-orphans" in text
    assert_no_output(tmp_path)

    reports = preprocess(tmp_path, "AliExpress_NL", progress=False, drop_orphans=True, chunk_bytes=4096)
    assert reports["train"].orphans == orphan.sum() and reports["train"].rows == (~orphan).sum()
    _, rows = read_rows(tmp_path / "AliExpress_NL" / "train.csv")
    assert rows == expected_rows(reduced["user_train"], arrays["item_train"][~orphan])


def test_a_page_with_two_user_rows_is_an_error(tmp_path, arrays):
    users = arrays["user_test"]
    doubled = dict(arrays, user_test=np.concatenate([users, users[2:3]]))
    write_download(tmp_path, "NL", texts(doubled), layout="csv")
    with pytest.raises(DataError, match=rf"nl_user_test.csv, line {len(users) + 1}, column user_1: search id \d+ has a second user row \(the first is line 3\)"):
        preprocess(tmp_path, "AliExpress_NL", progress=False)
    assert_no_output(tmp_path)


def test_missing_download_names_the_page_and_the_places_looked(tmp_path):
    with pytest.raises(UserError, match=r"nl_user_train.csv not found .*aliexpress_NL_datasets.zip.*tianchi.aliyun.com"):
        preprocess(tmp_path, "AliExpress_NL", progress=False)
    with pytest.raises(UserError, match="unknown AliExpress dataset 'AliExpress_DE'"):
        preprocess(tmp_path, "AliExpress_DE", progress=False)


def test_a_corrupt_outer_zip_is_an_error(tmp_path, capsys):
    (tmp_path / "aliexpress_NL_datasets.zip").write_bytes(b"PK\x03\x04 this is not really a zip" * 10)
    assert main(["preprocess", "--data-dir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aliexpress_NL_datasets.zip: cannot read the zip" in err and "md5" in err
    assert_no_output(tmp_path)


def test_a_truncated_inner_zip_is_an_error(tmp_path, arrays):
    folder = write_download(tmp_path, "NL", texts(arrays), layout="inner")
    item_zip = folder / "nl_item_test.zip"
    item_zip.write_bytes(item_zip.read_bytes()[:-300])  # the central directory is gone
    with pytest.raises(DataError, match=r"nl_item_test.zip > nl_item_test.csv: cannot read the zip"):
        preprocess(tmp_path, "AliExpress_NL", progress=False)
    assert_no_output(tmp_path)


def test_damaged_compressed_data_is_an_error(tmp_path, arrays):
    folder = write_download(tmp_path, "NL", texts(arrays), layout="inner")
    item_zip = folder / "nl_item_train.zip"
    data = bytearray(item_zip.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + 20  # inside the deflated stream
    for offset in range(start, start + 64):
        data[offset] ^= 0x5A
    item_zip.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"nl_item_train.zip > nl_item_train.csv: .*(corrupt|cannot read|expected)"):
        preprocess(tmp_path, "AliExpress_NL", progress=False)
    assert_no_output(tmp_path)


def test_a_zip_without_the_csv_is_an_error(tmp_path, arrays):
    folder = write_download(tmp_path, "NL", texts(arrays), layout="inner")
    with zipfile.ZipFile(folder / "nl_user_test.zip", "w") as archive:
        archive.writestr("readme.txt", "nothing here")
    with pytest.raises(DataError, match=r"nl_user_test.zip: holds no nl_user_test.csv \(it holds readme.txt\)"):
        preprocess(tmp_path, "AliExpress_NL", progress=False)
    assert_no_output(tmp_path)


def test_a_failure_keeps_earlier_output_untouched(tmp_path, arrays):
    write_download(tmp_path, "NL", texts(arrays), layout="csv")
    preprocess(tmp_path, "AliExpress_NL", progress=False)
    before = {split: (tmp_path / "AliExpress_NL" / f"{split}.csv").read_bytes() for split in ("train", "test")}
    (tmp_path / "AliExpress_NL" / "nl_item_test.csv").write_bytes(b"1,2,3\n")
    with pytest.raises(DataError, match="expected 49 values, found 3"):
        preprocess(tmp_path, "AliExpress_NL", progress=False)
    after = {split: (tmp_path / "AliExpress_NL" / f"{split}.csv").read_bytes() for split in ("train", "test")}
    assert after == before
    assert not list((tmp_path / "AliExpress_NL").glob("*.tmp*"))
