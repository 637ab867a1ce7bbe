"""Data: the synthetic generator, the processed layout (real sample and bad input), splits, vocabularies."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ALIEXPRESS_SAMPLE

from mtreclib.core.errors import DataError, UserError
from mtreclib.data import synthetic
from mtreclib.data.builtin import aliexpress_spec
from mtreclib.data.cache import read_splits
from mtreclib.data.datasets import Dataset, generated_dataset, load_dataset
from mtreclib.data.loader import BatchLoader
from mtreclib.data.processed import COLUMNS, write_processed_csv
from mtreclib.data.table import split_validation

SMALL = replace(synthetic.PRESETS["synthetic"], train_rows=5000, test_rows=2000)


def test_synthetic_is_deterministic_in_its_seed():
    a, b = synthetic.generate(SMALL), synthetic.generate(SMALL)
    for x, y in [(a.train.categorical, b.train.categorical), (a.train.numerical, b.train.numerical), (a.test.labels, b.test.labels)]:
        assert np.array_equal(x, y)
    c = synthetic.generate(replace(SMALL, seed=1))
    assert not np.array_equal(a.train.labels, c.train.labels)


def test_synthetic_is_shaped_like_aliexpress():
    data = synthetic.generate(SMALL)
    train = data.train
    assert train.categorical.shape == (5000, 16) and train.categorical.dtype == np.int32
    assert train.numerical.shape == (5000, 63) and train.numerical.dtype == np.float32
    assert train.labels.shape == (5000, 2) and set(np.unique(train.labels)) <= {0, 1}
    dims = np.array(synthetic.FIELD_DIMS)
    assert (train.categorical.max(axis=0) < dims).all() and (train.categorical >= 0).all()
    assert (dims < 100).sum() >= 12 and dims.max() >= 1000  # mostly small, a few in the hundreds or thousands
    zero_share = (train.numerical == 0).mean()
    assert 0.2 < zero_share < 0.8 and train.numerical.min() >= 0 and train.numerical.max() <= 1
    assert (train.labels[:, 1] <= train.labels[:, 0]).all(), "conversion only on clicked rows"
    # rows of one page share the user fields
    pages = data.train_search_id
    first = np.flatnonzero(np.r_[True, pages[1:] != pages[:-1]])
    sizes = np.diff(np.r_[first, len(pages)])
    assert sizes.mean() > 3
    same_page = pages[1:] == pages[:-1]
    assert (train.categorical[1:, :9][same_page] == train.categorical[:-1, :9][same_page]).all()


@pytest.mark.parametrize("preset", list(synthetic.PRESETS))
def test_synthetic_rates_hit_their_targets(preset):
    config = synthetic.PRESETS[preset]
    data = synthetic.generate(config)
    probabilities = data.train.probabilities
    assert probabilities.shape == (config.train_rows, 2)
    # Biases are solved on an independent 100,000-row calibration sample: rates hold up to its
    # sampling noise, which for a 0.07% rate is several percent.
    assert abs(probabilities[:, 0].mean() / config.ctr - 1) < 0.1
    assert abs(probabilities[:, 1].mean() / config.ctcvr - 1) < 0.1
    assert (probabilities[:, 1] <= probabilities[:, 0]).all()
    observed = data.train.labels.mean(axis=0)
    assert abs(observed[0] / config.ctr - 1) < 0.1
    assert abs(observed[1] / config.ctcvr - 1) < 0.25


def read_processed_csv(path: Path):
    """One file of the processed layout through the built-in spec, into memory (as train.csv of a folder)."""
    folder = path.parent
    if path.name != "train.csv":
        (folder / "train.csv").write_bytes(path.read_bytes())
    if not (folder / "test.csv").exists():
        (folder / "test.csv").write_bytes((folder / "train.csv").read_bytes())
    _, tables = read_splits(aliexpress_spec(folder, "x"))
    return tables["train"], tables["train"].group


def test_real_aliexpress_sample_reads_with_the_right_values():
    table, search_id = read_processed_csv(ALIEXPRESS_SAMPLE / "train.csv")
    assert table.categorical.shape == (100, 16) and table.numerical.shape == (100, 63) and table.labels.shape == (100, 2)
    assert table.categorical.dtype == np.int32 and table.numerical.dtype == np.float32 and table.labels.dtype == np.uint8
    first = (ALIEXPRESS_SAMPLE / "train.csv").read_text().splitlines()[1].split(",")
    assert search_id[0] == int(first[0])
    assert table.categorical[0].tolist() == [int(v) for v in first[1:17]]
    np.testing.assert_allclose(table.numerical[0], np.array(first[17:80], dtype=np.float32))
    assert table.labels[0].tolist() == [int(first[80]), int(first[81])]
    assert table.labels[:, 0].sum() == 60  # the sample's README: 60 of its 100 training rows are clicks


def test_real_sample_loads_as_a_dataset_with_out_of_vocabulary_slots(aliexpress_sample):
    dataset = aliexpress_sample
    train_max = dataset.train.categorical.max(axis=0)
    assert dataset.schema.field_dims == tuple(int(m) + 2 for m in train_max)
    assert dataset.schema.numerical_num == 63 and dataset.schema.task_names == ("click", "conversion")
    assert (dataset.test.categorical < np.array(dataset.schema.field_dims)).all()


def _in_memory(name: str, config: synthetic.SyntheticConfig, schema) -> Dataset:
    """What ``load_dataset`` made of the generator before its rows went through files: the
    generator's arrays as they are, vocabularies the training maximum + 2, and a larger test id
    mapped to its field's last slot, the training maximum + 1."""
    data = synthetic.generate(config)
    last = data.train.categorical.max(axis=0) + 1
    train = replace(data.train, group=data.train_search_id)
    test = replace(data.test, categorical=np.minimum(data.test.categorical, last).astype(np.int32), group=data.test_search_id)
    return Dataset(name, schema, train, test)


def aliexpress_spec_schema(field_dims: tuple[int, ...]):
    """The AliExpress layout's schema for vocabularies ``field_dims``."""
    from mtreclib.data.encoders import Encoders

    schema = Encoders.for_spec(aliexpress_spec()).schema()
    return replace(schema, field_dims=field_dims)


def test_the_built_in_dataset_goes_through_files_spec_and_cache_with_the_generators_rows(tmp_path):
    config = replace(SMALL, train_rows=500, test_rows=1000)  # a small training split: test ids beyond its vocabulary
    dataset = generated_dataset("synthetic", config, tmp_path, progress=False)
    folder = tmp_path / "synthetic"
    assert sorted(p.name for p in folder.glob("*.parquet")) == ["test.parquet", "train.parquet"]
    assert (folder / "mtrec-cache" / "synthetic" / "meta.json").is_file() and isinstance(dataset.train.categorical, np.memmap)
    expected = _in_memory("synthetic", config, dataset.schema)
    train_max = expected.train.categorical.max(axis=0)
    assert dataset.schema.field_dims == tuple(int(m) + 2 for m in train_max)
    assert dataset.schema == aliexpress_spec_schema(dataset.schema.field_dims)
    assert (expected.test.categorical != synthetic.generate(config).test.categorical).any()  # the rule is exercised
    for split in ("train", "test"):
        ours, theirs = getattr(dataset, split), getattr(expected, split)
        for key in ("categorical", "numerical", "labels", "probabilities", "group"):
            a, b = getattr(ours, key), getattr(theirs, key)
            assert a.dtype == b.dtype and np.array_equal(a, b), (split, key)
    # Batches are the same tensors.
    for ours, theirs in zip(BatchLoader(dataset.train, 512, shuffle=True, seed=3), BatchLoader(expected.train, 512, shuffle=True, seed=3)):
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs) if isinstance(a, torch.Tensor))


def test_a_run_on_the_built_in_dataset_equals_one_on_the_generators_arrays_bit_for_bit(tmp_path):
    from conftest import small_experiment

    from mtreclib.training.experiment import run_experiment

    config = replace(SMALL, train_rows=3000, test_rows=1000)
    dataset = generated_dataset("synthetic", config, tmp_path, progress=False)
    runs = [run_experiment(small_experiment(epochs=2, patience=0), dataset=d, announce=False) for d in (dataset, _in_memory("synthetic", config, dataset.schema))]
    assert runs[0].tasks == runs[1].tasks and runs[0].oracle == runs[1].oracle and runs[0].oracle is not None


def test_generated_files_are_written_once_and_again_for_other_settings(tmp_path, monkeypatch):
    config = replace(SMALL, train_rows=300, test_rows=100)
    generated_dataset("g", config, tmp_path, progress=False)
    monkeypatch.setattr(synthetic, "generate", lambda *a, **k: pytest.fail("generated again"))
    assert len(generated_dataset("g", config, tmp_path, progress=False).train) == 300
    monkeypatch.undo()
    assert len(generated_dataset("g", replace(config, train_rows=200), tmp_path, progress=False).train) == 200


def test_write_then_read_round_trips(tmp_path):
    data = synthetic.generate(replace(SMALL, train_rows=300, test_rows=10))
    write_processed_csv(tmp_path / "train.csv", data.train, data.train_search_id)
    table, search_id = read_processed_csv(tmp_path / "train.csv")
    assert np.array_equal(table.categorical, data.train.categorical)
    assert np.array_equal(table.numerical, data.train.numerical)
    assert np.array_equal(table.labels, data.train.labels)
    assert np.array_equal(search_id, data.train_search_id)
    assert not list(tmp_path.glob("*.tmp*"))


def _sample_lines() -> list[str]:
    return (ALIEXPRESS_SAMPLE / "train.csv").read_text().splitlines()


def _set(line: str, column: str, value: str) -> str:
    values = line.split(",")
    values[COLUMNS.index(column)] = value
    return ",".join(values)


BAD_FILES = {
    "empty": (lambda lines: [], "empty", None, None),
    "header only": (lambda lines: lines[:1], "no data rows", None, None),
    "renamed column": (lambda lines: [lines[0].replace("categorical_3", "cat_3")] + lines[1:], "'categorical_3'", 1, None),
    "too few columns": (lambda lines: [lines[0]] + [lines[1].rsplit(",", 1)[0]] + lines[2:], "expected 82 values, found 81", 2, None),
    "non-integer id": (lambda lines: lines[:5] + [_set(lines[5], "categorical_4", "1.5")] + lines[6:], "expected an integer", 6, "categorical_4"),
    "text in a feature": (lambda lines: lines[:3] + [_set(lines[3], "numerical_7", "abc")] + lines[4:], "expected a number", 4, "numerical_7"),
    "negative id": (lambda lines: lines[:7] + [_set(lines[7], "categorical_2", "-1")] + lines[8:], "expected an id", 8, "categorical_2"),
    "label 2": (lambda lines: lines[:9] + [_set(lines[9], "click", "2")] + lines[10:], "expected a label 0 or 1", 10, "click"),
    "conversion without click": (
        lambda lines: lines[:4] + [_set(_set(lines[4], "click", "0"), "conversion", "1")] + lines[5:],
        "conversion = 1 on a row without click",
        5,
        "conversion",
    ),
    "missing value": (lambda lines: lines[:2] + [_set(lines[2], "numerical_1", "")] + lines[3:], "missing value", 3, "numerical_1"),
    "missing id": (lambda lines: lines[:2] + [_set(lines[2], "categorical_5", "")] + lines[3:], "missing value", 3, "categorical_5"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_processed_files_get_one_line_errors_naming_file_line_and_column(tmp_path, case):
    edit, message, line, column = BAD_FILES[case]
    path = tmp_path / "train.csv"
    lines = edit(_sample_lines())
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    (tmp_path / "test.csv").write_text((ALIEXPRESS_SAMPLE / "test.csv").read_text())
    with pytest.raises(DataError) as error:
        read_processed_csv(path)
    text = str(error.value)
    assert "\n" not in text and text.startswith(str(path)) and message in text
    if line is not None:
        assert f"line {line}" in text
    if column is not None:
        assert f"column {column}" in text


def test_missing_dataset_is_a_user_error_naming_what_was_expected(tmp_path):
    with pytest.raises(UserError, match="AliExpress_FR does not exist.*dataset.yaml nor train.csv and test.csv"):
        load_dataset("AliExpress_FR", tmp_path)


def test_tail_validation_split_is_the_last_rows_as_views():
    data = synthetic.generate(SMALL)
    train, valid = split_validation(data.train, 0.1)
    assert len(train) == 4500 and len(valid) == 500
    assert np.shares_memory(valid.categorical, data.train.categorical)
    assert np.array_equal(valid.labels, data.train.labels[4500:])


def test_random_validation_split_is_seeded_disjoint_and_shares_arrays():
    data = synthetic.generate(SMALL)
    train, valid = split_validation(data.train, 0.2, mode="random", seed=4)
    again, _ = split_validation(data.train, 0.2, mode="random", seed=4)
    assert np.array_equal(train.index, again.index)
    assert len(np.intersect1d(train.index, valid.index)) == 0 and len(train) + len(valid) == 5000
    assert train.categorical is data.train.categorical
    assert not np.array_equal(valid.index, np.arange(4000, 5000))
