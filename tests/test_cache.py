"""The memory-mapped cache of a dataset: the real sample through it, rebuilds, bad files, vocabularies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mtreclib.core.errors import DataError
from mtreclib.data import cache
from mtreclib.data.builtin import aliexpress_spec
from mtreclib.data.cache import NpyWriter, cache_folder, open_cache, read_splits
from mtreclib.data.datasets import load_dataset
from mtreclib.data.loader import BatchLoader
from mtreclib.data.processed import COLUMNS
from mtreclib.data.table import split_validation


def _is_mapped(array: np.ndarray) -> bool:
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base if isinstance(array.base, np.ndarray) else None
    return False


def _csv_rows(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The file's search ids, ids, features and labels, parsed here independently of the library."""
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == list(COLUMNS)
    values = [line.split(",") for line in lines[1:]]
    search_id = np.array([int(v[0]) for v in values])
    categorical = np.array([[int(x) for x in v[1:17]] for v in values])
    numerical = np.array([[float(x) for x in v[17:80]] for v in values], dtype=np.float32)
    labels = np.array([[int(v[80]), int(v[81])] for v in values], dtype=np.uint8)
    return search_id, categorical, numerical, labels


def test_the_real_sample_loads_through_the_cache_with_the_csv_values(aliexpress_dir):
    dataset = load_dataset("AliExpress_NL", aliexpress_dir)
    folder = aliexpress_dir / "AliExpress_NL"
    train_ids = _csv_rows(folder / "train.csv")[1]
    for split, table in (("train", dataset.train), ("test", dataset.test)):
        search_id, categorical, numerical, labels = _csv_rows(folder / f"{split}.csv")
        assert _is_mapped(table.categorical) and _is_mapped(table.numerical) and _is_mapped(table.labels)
        assert table.categorical.dtype == np.int32 and table.numerical.dtype == np.float32 and table.labels.dtype == np.uint8
        assert np.array_equal(table.categorical, np.minimum(categorical, train_ids.max(axis=0) + 1))  # test ids capped
        assert np.array_equal(table.numerical, numerical)
        assert np.array_equal(table.labels, labels)
        assert np.array_equal(table.group, search_id)
    meta = json.loads((folder / "mtrec-cache" / "AliExpress_NL" / "meta.json").read_text())
    assert meta["version"] == cache.CACHE_VERSION and meta["splits"]["train"]["rows"] == 100
    assert meta["splits"]["train"]["positives"][0] == 60  # the sample's README: 60 of 100 training rows are clicks
    assert dataset.schema.field_dims == tuple(int(m) + 2 for m in train_ids.max(axis=0))
    assert dataset.schema.task_implies == ("", "click")


def test_a_second_load_reuses_the_cache_and_a_changed_csv_rebuilds_it(aliexpress_dir, monkeypatch):
    csv_path = aliexpress_dir / "AliExpress_NL" / "train.csv"
    first = load_dataset("AliExpress_NL", aliexpress_dir)
    original = cache.build

    def refuse(*args, **kwargs):
        raise AssertionError("the cache was rebuilt although the CSV did not change")

    monkeypatch.setattr(cache, "build", refuse)
    again = load_dataset("AliExpress_NL", aliexpress_dir)
    assert np.array_equal(again.train.numerical, first.train.numerical)

    lines = csv_path.read_text().splitlines()
    values = lines[1].split(",")
    values[COLUMNS.index("numerical_1")] = "0.75"
    lines[1] = ",".join(values)
    csv_path.write_text("\n".join(lines) + "\n")
    status = csv_path.stat()
    os.utime(csv_path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
    with pytest.raises(AssertionError, match="rebuilt"):
        load_dataset("AliExpress_NL", aliexpress_dir)
    monkeypatch.setattr(cache, "build", original)
    rebuilt = load_dataset("AliExpress_NL", aliexpress_dir)
    assert rebuilt.train.numerical[0, 0] == np.float32(0.75)
    assert np.array_equal(rebuilt.train.numerical[1:], first.train.numerical[1:])


def test_a_cache_of_the_old_layout_is_removed_and_rebuilt_not_misread(aliexpress_dir):
    old = aliexpress_dir / "AliExpress_NL" / "mtrec-cache" / "train"
    old.mkdir(parents=True)
    (old / "meta.json").write_text(json.dumps({"version": 1, "rows": 3}))
    np.save(old / "categorical.npy", np.zeros((3, 16), np.int32))
    dataset = load_dataset("AliExpress_NL", aliexpress_dir)
    assert len(dataset.train) == 100 and not old.exists()


def _set(line: str, column: str, value: str) -> str:
    values = line.split(",")
    values[COLUMNS.index(column)] = value
    return ",".join(values)


BAD = {
    "label 2": (lambda lines: lines[:30] + [_set(lines[30], "conversion", "2")] + lines[31:], "expected a label 0 or 1, found 2", 31, "conversion"),
    "conversion without click": (
        lambda lines: lines[:57] + [_set(_set(lines[57], "click", "0"), "conversion", "1")] + lines[58:],
        "conversion = 1 on a row without click",
        58,
        "conversion",
    ),
    "non-integer id": (lambda lines: lines[:80] + [_set(lines[80], "categorical_16", "3.5")] + lines[81:], "expected an integer", 81, "categorical_16"),
    "too many values": (lambda lines: lines[:66] + [lines[66] + ",1"] + lines[67:], "expected 82 values, found 83", 67, None),
    "empty": (lambda lines: [], "the file is empty", None, None),
    "header only": (lambda lines: lines[:1], "no data rows", None, None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_processed_file_stops_the_load_and_leaves_no_cache(aliexpress_dir, case):
    edit, message, line, column = BAD[case]
    folder = aliexpress_dir / "AliExpress_NL"
    csv_path = folder / "train.csv"
    lines = edit(csv_path.read_text().splitlines())
    csv_path.write_text("\n".join(lines) + ("\n" if lines else ""))
    spec = aliexpress_spec(folder, "AliExpress_NL")
    with pytest.raises(DataError) as error:
        open_cache(spec, folder, progress=False, chunk_bytes=2000)  # several pieces
    text = str(error.value)
    assert text.startswith(str(csv_path)) and message in text and "\n" not in text
    if line is not None:
        assert f"line {line}" in text
    if column is not None:
        assert f"column {column}" in text
    with pytest.raises(DataError, match=message):
        load_dataset("AliExpress_NL", aliexpress_dir)
    left = [p.name for p in (folder / "mtrec-cache").iterdir() if p.name != ".lock"]
    assert left == []


def test_an_interrupted_build_leaves_no_cache_and_the_next_load_builds_it(aliexpress_dir, monkeypatch):
    folder = aliexpress_dir / "AliExpress_NL"
    real = cache.read_chunks

    def interrupted(*args, **kwargs):
        for number, chunk in enumerate(real(*args, **kwargs)):
            if number == 2:
                raise KeyboardInterrupt
            yield chunk

    monkeypatch.setattr(cache, "read_chunks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_cache(aliexpress_spec(folder, "AliExpress_NL"), folder, progress=False, chunk_bytes=1500)
    assert [p.name for p in (folder / "mtrec-cache").iterdir() if p.name != ".lock"] == []
    monkeypatch.setattr(cache, "read_chunks", real)
    assert len(load_dataset("AliExpress_NL", aliexpress_dir).train) == 100


def test_a_cache_built_in_small_pieces_equals_the_whole_file_read_in_memory(aliexpress_dir):
    folder = aliexpress_dir / "AliExpress_NL"
    spec = aliexpress_spec(folder, "AliExpress_NL")
    pieces = open_cache(spec, folder, progress=False, chunk_bytes=700).tables
    _, whole = read_splits(spec)
    for split in ("train", "test"):
        for name in ("categorical", "numerical", "labels", "group"):
            assert np.array_equal(getattr(pieces[split], name), getattr(whole[split], name)), (split, name)
    assert cache_folder(spec, folder).is_dir()


def _write_pair(folder: Path, train_categorical: np.ndarray, test_categorical: np.ndarray) -> None:
    from mtreclib.data.processed import write_processed_csv
    from mtreclib.data.table import MultiTaskTable

    for name, categorical in (("train", train_categorical), ("test", test_categorical)):
        n = len(categorical)
        labels = np.zeros((n, 2), np.uint8)
        labels[::3, 0] = 1
        table = MultiTaskTable(categorical.astype(np.int32), np.full((n, 63), 0.5, np.float32), labels)
        write_processed_csv(folder / f"{name}.csv", table, np.arange(n))


def test_test_ids_beyond_the_training_vocabulary_go_to_the_last_slot(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 5, (40, 16))
    test = rng.integers(0, 5, (12, 16))
    test[3, 0], test[7, 15], test[8, 2] = 9, 1000, int(train[:, 2].max()) + 1
    _write_pair(tmp_path / "toy", train, test)
    dataset = load_dataset("toy", tmp_path)
    dims = np.array(dataset.schema.field_dims)
    assert (dims == train.max(axis=0) + 2).all()
    expected = np.minimum(test, dims - 1)
    assert expected[3, 0] == dims[0] - 1 and expected[8, 2] == test[8, 2]  # max + 1 is already the unknown slot
    assert np.array_equal(dataset.test.categorical, expected)
    assert _is_mapped(dataset.test.categorical) and _is_mapped(dataset.train.categorical)


@pytest.mark.parametrize("mode", ["tail", "random"])
def test_validation_splits_of_a_cached_table_share_the_maps(aliexpress_dir, mode):
    dataset = load_dataset("AliExpress_NL", aliexpress_dir)
    train, valid = split_validation(dataset.train, 0.2, mode=mode, seed=1)
    assert len(train) == 80 and len(valid) == 20
    for part in (train, valid):
        assert np.shares_memory(part.categorical, dataset.train.categorical)
        assert np.shares_memory(part.numerical, dataset.train.numerical)
    batch = next(iter(BatchLoader(valid, 8)))
    rows = valid.rows(dataset.train.numerical)[:8] if mode == "random" else dataset.train.numerical[80:88]
    assert np.array_equal(batch.numerical.numpy(), rows)


def test_npy_writer_appends_pieces_into_one_loadable_array(tmp_path):
    rng = np.random.default_rng(1)
    pieces = [rng.random((n, 3)).astype(np.float32) for n in (5, 0, 17, 1)]
    writer = NpyWriter(tmp_path / "a.npy", np.float32, (3,))
    for piece in pieces:
        writer.append(piece)
    writer.finish()
    assert np.array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), np.concatenate(pieces))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_parquet_chunks_hold_a_few_batches_not_the_file(tmp_path):
    """Reading a Parquet file batch by batch keeps Arrow's memory at a few batches, whatever the
    file's size (PyArrow's default pre-buffering kept every row group read so far)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mtreclib.data.sources import _parquet_chunks

    rows, groups, width = 200_000, 20, 8
    rng = np.random.default_rng(0)
    table = pa.table({f"x{j}": rng.standard_normal(rows) for j in range(width)})  # 12.8 MB of float64
    path = tmp_path / "wide.parquet"
    pq.write_table(table, path, row_group_size=rows // groups, compression="NONE")
    whole = table.nbytes
    del table
    before, peak, seen = pa.total_allocated_bytes(), 0, 0
    for chunk in _parquet_chunks(path, [f"x{j}" for j in range(width)], rows // groups):
        seen += len(chunk.table)
        peak = max(peak, pa.total_allocated_bytes() - before)
        del chunk
    assert seen == rows
    assert peak < whole / 4, f"{peak} bytes held while reading a {whole}-byte file"


def _small_spec_folder(parent: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = parent / "d"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"a": ["x", "y", "z", "x"] * 8, "click": [1, 0, 0, 1] * 8}), folder / "t.parquet")
    (folder / "dataset.yaml").write_text("train: t.parquet\ntest: t.parquet\ncategorical: [a]\nlabels: [click]\n")
    return folder


def test_a_read_only_dataset_folder_is_cached_in_the_users_cache_folder(tmp_path, monkeypatch, capsys):
    folder = _small_spec_folder(tmp_path / "data")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    probe = cache.write_probe
    # Read-only as root sees it too (permissions do not stop root; a read-only mount does).
    monkeypatch.setattr(cache, "write_probe", lambda where: PermissionError(13, "Permission denied") if Path(where) == folder else probe(where))
    folder.chmod(0o555)
    try:
        dataset = load_dataset("d", tmp_path / "data", progress=False)
        again = load_dataset("d", tmp_path / "data", progress=False)
    finally:
        folder.chmod(0o755)
    root = cache.outside_root(folder, tmp_path / "xdg" / "mtreclib")
    assert root.parent == tmp_path / "xdg" / "mtreclib" and root.name.startswith("d-") and (root / "dataset" / "meta.json").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.yaml", "t.parquet"]  # nothing written beside the spec
    err = capsys.readouterr().err
    assert err == f"mtrec: cannot write in {folder} (Permission denied): the dataset's cache goes to {root} (--cache-dir chooses)\n"
    assert np.array_equal(again.train.categorical, dataset.train.categorical) and dataset.train.categorical[:4, 0].tolist() == [1, 2, 3, 1]


def test_cache_dir_puts_the_cache_where_it_says_one_folder_per_dataset_folder(tmp_path, capsys):
    from mtreclib.cli import main

    first, second = _small_spec_folder(tmp_path / "one"), _small_spec_folder(tmp_path / "two")
    assert main(["train", "--dataset", "d", "--data-dir", str(tmp_path / "one"), "--cache-dir", str(tmp_path / "c"), "--embed-dim", "4",
                 "--batch-size", "8", "--epochs", "1", "--patience", "0", "--valid-fraction", "0.25", "--no-save", "--no-progress"]) == 0  # fmt: skip
    load_dataset("d", tmp_path / "two", progress=False, cache_dir=tmp_path / "c")
    roots = sorted((tmp_path / "c").iterdir())
    assert roots == sorted([cache.outside_root(first, tmp_path / "c"), cache.outside_root(second, tmp_path / "c")]) and len(set(roots)) == 2
    assert all((root / "dataset" / "meta.json").is_file() for root in roots)
    assert not (first / "mtrec-cache").exists() and not (second / "mtrec-cache").exists()
    assert "cannot write" not in capsys.readouterr().err
