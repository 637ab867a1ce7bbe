"""Datasets of the user's own through a dataset spec: Parquet and CSV, string ids, missing values,
multi-valued fields, label rules, split rules, transforms, and one-line errors for every mistake."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtreclib.cli import main
from mtreclib.core.errors import DataError
from mtreclib.data.cache import read_splits
from mtreclib.data.datasets import load_dataset
from mtreclib.data.myshop import SPEC as MYSHOP_SPEC  # the README's example (test_readme checks it is the README's): it must work as written
from mtreclib.data.spec import DatasetSpec, SpecError


def shop_rows(n: int, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    click = rng.random(n) < 0.4
    return {
        "user_id": [f"u{x}" for x in rng.integers(0, 30, n)],
        "item_id": [int(x) for x in rng.integers(100, 160, n)],
        "shop_id": [None if rng.random() < 0.1 else f"s{x}" for x in rng.integers(0, 8, n)],
        "city": [["Paris", "Lyon", "Nice"][x] for x in rng.integers(0, 3, n)],
        "tags": [[f"t{x}" for x in rng.integers(0, 12, rng.integers(0, 25))] for _ in range(n)],
        "price": [None if rng.random() < 0.1 else float(p) for p in rng.gamma(2.0, 10.0, n)],
        "age": [None if rng.random() < 0.1 else int(a) for a in rng.integers(18, 70, n)],
        "click": click.astype(int).tolist(),
        "cart": (click & (rng.random(n) < 0.5)).astype(int).tolist(),
        "buy": (click & (rng.random(n) < 0.3)).astype(int).tolist(),
        "session_id": [f"sess{x}" for x in np.sort(rng.integers(0, n // 4, n))],
    }


def write_shop(folder: Path) -> dict[str, dict[str, list]]:
    (folder / "train").mkdir(parents=True)
    parts = {"train/a.parquet": shop_rows(300, 1), "train/b.parquet": shop_rows(200, 2), "test.parquet": shop_rows(120, 3)}
    for name, rows in parts.items():
        pq.write_table(pa.table(rows), folder / name, row_group_size=64)
    (folder / "dataset.yaml").write_text(MYSHOP_SPEC)
    return parts


def concat(parts: list[dict[str, list]]) -> dict[str, list]:
    return {key: sum((p[key] for p in parts), []) for key in parts[0]}


def vocabulary(values: list) -> dict:
    """The documented rule, computed here: by decreasing count, ties by value; ids from 1."""
    counts = Counter(v for v in values if v is not None)
    ordered = sorted(counts, key=lambda v: (-counts[v], v))
    return {v: i + 1 for i, v in enumerate(ordered)}


@pytest.fixture()
def shop(tmp_path) -> tuple[Path, dict]:
    parts = write_shop(tmp_path / "myshop")
    return tmp_path, parts


def test_the_readme_example_loads_with_every_value_encoded_as_documented(shop):
    data_dir, parts = shop
    dataset = load_dataset("myshop", data_dir)
    train = concat([parts["train/a.parquet"], parts["train/b.parquet"]])  # the glob's files in order
    test = parts["test.parquet"]
    schema = dataset.schema
    assert schema.field_names == ("user_id", "item_id", "shop_id", "city")
    assert schema.task_names == ("click", "cart", "buy") and schema.task_implies == ("", "click", "click")
    assert schema.numerical_num == 2 and [b.name for b in schema.bags] == ["tags"] and schema.bags[0].pooling == "mean"
    for f, name in enumerate(schema.field_names):
        vocab = vocabulary(train[name])
        assert schema.field_dims[f] == len(vocab) + 1
        for split, rows in (("train", train), ("test", test)):
            ids = getattr(dataset, split).categorical[:, f]
            assert ids.tolist() == [vocab.get(v, 0) for v in rows[name]], (split, name)  # unseen and missing -> 0
    tags = vocabulary([t for row in train["tags"] for t in row[:20]])  # the values kept (max_len) are counted
    bag = dataset.test.bags[0]
    for i, row in enumerate(test["tags"]):
        kept = row[:20]  # max_len
        assert bag.values[bag.offsets[i] : bag.offsets[i + 1]].tolist() == [tags.get(t, 0) for t in kept]
    price = np.array([math.log1p(p) if p is not None else 0.0 for p in test["price"]], np.float32)
    age = np.array([a if a is not None else -1 for a in test["age"]], np.float32)
    assert np.allclose(dataset.test.numerical[:, 0], price) and np.array_equal(dataset.test.numerical[:, 1], age)
    assert dataset.test.labels.tolist() == [list(r) for r in zip(test["click"], test["cart"], test["buy"])]
    sessions = dataset.train.group
    same = np.array([a == b for a, b in zip(train["session_id"][1:], train["session_id"][:-1])])
    assert np.array_equal(sessions[1:] == sessions[:-1], same)  # equal ids exactly for equal sessions


def test_the_readme_example_trains_every_kind_of_model_from_the_command_line(shop, tmp_path, capsys):
    data_dir, _ = shop
    for model in ("mmoe", "aitm", "metaheac"):
        status = main(["train", "--model", model, "--dataset", "myshop", "--data-dir", str(data_dir), "--epochs", "1",
                       "--embed-dim", "4", "--batch-size", "64", "--max-steps", "3", "--no-save", "--no-progress"])  # fmt: skip
        assert status == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "myshop" in out and all(task in out for task in ("click", "cart", "buy"))
    spec_path = data_dir / "myshop" / "dataset.yaml"
    assert main(["train", "--dataset", str(spec_path), "--epochs", "1", "--embed-dim", "4", "--batch-size", "64",
                 "--max-steps", "2", "--no-save", "--no-progress", "--tasks", "click,buy"]) == 0  # fmt: skip
    assert "buy" in capsys.readouterr().out


def test_the_cache_maps_the_same_values_as_reading_into_memory(shop):
    data_dir, _ = shop
    dataset = load_dataset("myshop", data_dir)
    _, tables = read_splits(DatasetSpec.load(data_dir / "myshop" / "dataset.yaml"))
    for split in ("train", "test"):
        mapped, memory = getattr(dataset, split), tables[split]
        for name in ("categorical", "numerical", "labels", "group"):
            assert np.array_equal(getattr(mapped, name), getattr(memory, name)), (split, name)
        assert np.array_equal(mapped.bags[0].values, memory.bags[0].values)
        assert np.array_equal(mapped.bags[0].offsets, memory.bags[0].offsets)
    assert (data_dir / "myshop" / "mtrec-cache" / "dataset" / "encoders.json").is_file()


def write_csv(path: Path, header: list[str] | None, rows: list[list], delimiter: str = ",") -> None:
    lines = ([delimiter.join(header)] if header else []) + [delimiter.join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def test_csv_without_header_with_a_separator_weights_and_label_rules(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    rows = [
        # user, tags, tag weights, watched seconds, label code, price
        ["a", "x|y", "1|3", 40, 2, 1.5],
        ["b", "", "", 5, 0, 2.5],
        ["a", "y|z|x", "2|2|4", 31, 1, 3.5],
        ["c", "z", "0.5", 12, 2, 4.5],
    ]
    write_csv(folder / "train.tsv", None, rows, delimiter=";")
    write_csv(folder / "test.tsv", None, rows[:2], delimiter=";")
    (folder / "dataset.yaml").write_text(textwrap.dedent("""\
        format: csv
        csv: {delimiter: ";", header: false, columns: [user, tags, tag_weights, seconds, code, price]}
        train: train.tsv
        test: test.tsv
        categorical: [{name: user, role: user}]
        multi_valued: [{name: tags, weights: tag_weights, pooling: sum}]
        numerical: [{name: price, transform: standardize}]
        labels:
          - {name: long_view, column: seconds, threshold: 30}
          - {name: buy, column: code, positive: [2]}
        """))
    dataset = load_dataset("logs", tmp_path)
    assert dataset.train.labels.tolist() == [[1, 1], [0, 0], [1, 0], [0, 1]]
    assert dataset.schema.field_roles == ("user",) and dataset.schema.bags[0].weighted and dataset.schema.bags[0].pooling == "sum"
    bag = dataset.train.bags[0]
    assert bag.offsets.tolist() == [0, 2, 2, 5, 6]  # the empty cell is a row without values
    assert bag.weights.tolist() == [1, 3, 2, 2, 4, 0.5]
    counts = Counter(["x", "y", "y", "z", "x", "z"])  # each value counted once per occurrence
    tags = {t: i + 1 for i, t in enumerate(sorted(counts, key=lambda t: (-counts[t], t)))}
    assert bag.values.tolist() == [tags[t] for t in ["x", "y", "y", "z", "x", "z"]]
    prices = np.array([1.5, 2.5, 3.5, 4.5])
    expected = (prices - prices.mean()) / prices.std()
    assert np.allclose(dataset.train.numerical[:, 0], expected)
    assert np.allclose(dataset.test.numerical[:, 0], expected[:2])  # fitted on train, applied to test


def test_a_parquet_text_bag_is_split_exactly_as_the_same_csv_cell(tmp_path):
    # Stumble: a Parquet "" became one empty value, the most frequent token; CSV reads it as no values.
    columns = {"user": ["a", "b", "a", "c", "d"], "tags": ["x|y", "", "y|z|x", None, "x"], "tag_weights": ["1|3", "", "2|2|4", None, "5"],
               "click": [1, 0, 1, 0, 1]}  # fmt: skip
    spec = "categorical: [user]\nmulti_valued: [{name: tags, weights: tag_weights}]\nlabels: [click]\n"
    (tmp_path / "p").mkdir()
    pq.write_table(pa.table(columns), tmp_path / "p" / "t.parquet")
    (tmp_path / "p" / "dataset.yaml").write_text("train: t.parquet\ntest: t.parquet\n" + spec)
    (tmp_path / "c").mkdir()
    write_csv(tmp_path / "c" / "t.csv", list(columns), [list(row) for row in zip(*columns.values())])
    (tmp_path / "c" / "dataset.yaml").write_text("format: csv\ntrain: t.csv\ntest: t.csv\n" + spec)
    parquet, csv = load_dataset("p", tmp_path).train.bags[0], load_dataset("c", tmp_path).train.bags[0]
    assert parquet.offsets.tolist() == csv.offsets.tolist() == [0, 2, 2, 5, 5, 6]  # "" and null: no values
    assert parquet.values.tolist() == csv.values.tolist() == [1, 2, 2, 3, 1, 1]  # x 3 times, y twice, z once: ids 1, 2, 3
    assert parquet.weights.tolist() == csv.weights.tolist() == [1, 3, 2, 2, 4, 5]
    assert load_dataset("p", tmp_path).schema.bags[0].vocab_size == 4  # x, y, z and the out-of-vocabulary slot: no "" value


def _source(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    table = pa.table({
        "item": rng.integers(0, 20, n), "time": rng.permutation(n) * 10, "click": (rng.random(n) < 0.5).astype(np.int8),
    })  # fmt: skip
    pq.write_table(table.slice(0, n // 2), folder / "part-0.parquet", row_group_size=37)
    pq.write_table(table.slice(n // 2), folder / "part-1.parquet", row_group_size=53)


def test_a_random_split_of_one_source_is_seeded_and_independent_of_how_the_files_are_cut(tmp_path):
    _source(tmp_path / "r", 1000)
    spec_text = "source: part-*.parquet\nsplit: {method: random, test: 0.2, valid: 0.1, seed: 3}\ncategorical: [item]\nlabels: [click]\n"
    (tmp_path / "r" / "dataset.yaml").write_text(spec_text)
    first = load_dataset("r", tmp_path)
    sizes = [len(first.train), len(first.valid), len(first.test)]
    assert sum(sizes) == 1000 and 150 < sizes[2] < 250 and 60 < sizes[1] < 140
    # The same rows in one file, read in other pieces: the same assignment.
    table = pa.concat_tables([pq.read_table(tmp_path / "r" / f"part-{i}.parquet") for i in (0, 1)])
    (tmp_path / "one").mkdir()
    pq.write_table(table, tmp_path / "one" / "part-0.parquet", row_group_size=101)
    (tmp_path / "one" / "dataset.yaml").write_text(spec_text)
    second = load_dataset("one", tmp_path)
    for split in ("train", "valid", "test"):
        assert np.array_equal(getattr(first, split).categorical, getattr(second, split).categorical), split
    (tmp_path / "other").mkdir()
    pq.write_table(table, tmp_path / "other" / "part-0.parquet")
    (tmp_path / "other" / "dataset.yaml").write_text(spec_text.replace("seed: 3", "seed: 4"))
    assert not np.array_equal(load_dataset("other", tmp_path).test.categorical, first.test.categorical)


def test_an_ordered_split_puts_the_latest_rows_in_test(tmp_path):
    _source(tmp_path / "o", 1000)
    (tmp_path / "o" / "dataset.yaml").write_text(
        "source: [part-0.parquet, part-1.parquet]\nsplit: {method: ordered, column: time, test: 0.2, valid: 0.1}\n"
        "categorical: [item]\nlabels: [click]\ngroup: time\n"
    )
    dataset = load_dataset("o", tmp_path)
    times = {split: getattr(dataset, split).group for split in ("train", "valid", "test")}  # the time column as group ids
    assert len(times["test"]) == 200 and len(times["valid"]) == 100 and len(times["train"]) == 700
    assert times["train"].max() < times["valid"].min() and times["valid"].max() < times["test"].min()


def test_rare_values_go_to_the_out_of_vocabulary_slot_and_hashing_is_stable(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    train = pa.table({"a": ["x", "x", "y", "z", "z", "z"], "b": ["p", "q", "r", None, "p", "s"], "c": [5, 7, 9, 5, 0, 3], "y": [0, 1, 0, 1, 0, 1]})
    pq.write_table(train, folder / "train.parquet")
    pq.write_table(train, folder / "test.parquet")
    (folder / "dataset.yaml").write_text(
        "train: train.parquet\ntest: test.parquet\nlabels: [y]\n"
        "categorical: [{name: a, min_count: 2}, {name: b, hash_buckets: 4}, {name: c, vocabulary: identity}]\n"
    )
    dataset = load_dataset("v", tmp_path)
    assert dataset.train.categorical[:, 0].tolist() == [2, 2, 0, 1, 1, 1]  # y seen once: out of vocabulary
    hashed = dataset.train.categorical[:, 1]
    assert hashed[3] == 0 and ((hashed[[0, 1, 2, 4, 5]] >= 1) & (hashed[[0, 1, 2, 4, 5]] <= 4)).all() and hashed[0] == hashed[4]
    assert dataset.train.categorical[:, 2].tolist() == [5, 7, 9, 5, 0, 3] and dataset.schema.field_dims == (3, 5, 11)
    again = load_dataset("v", tmp_path)
    assert np.array_equal(again.train.categorical, dataset.train.categorical)


SPEC_MISTAKES = {
    "unknown key": ("train: t.parquet\ntest: t.parquet\ncategorical: [a]\nlabels: [y]\nlabel: [z]\n", "label: not a dataset spec key"),
    "bad transform": (
        "train: t.parquet\ntest: t.parquet\ncategorical: [a]\nlabels: [y]\nnumerical: [{name: n}, {name: m, transform: log}]\n",
        "numerical[1]: transform must be one of standardize, log1p, minmax, got 'log'",
    ),
    "wrong type": ("train: t.parquet\ntest: t.parquet\ncategorical: [{name: a, min_count: lots}]\nlabels: [y]\n", "categorical[0]: min_count must be an integer"),
    "missing file": ("train: t.parquet\ntest: nothere.parquet\ncategorical: [a]\nlabels: [y]\n", "test: nothere.parquet matches no file"),
    "no labels": ("train: t.parquet\ntest: t.parquet\ncategorical: [a]\n", "labels: name at least one label"),
    "implies an unknown task": ("train: t.parquet\ntest: t.parquet\ncategorical: [a]\nlabels: [y]\nimplies: {y: click}\n", "implies.y: 'click' is not a label"),
    "not yaml": ("train: [t.parquet\n", "not valid YAML"),
    "some labels' probabilities": (
        "train: t.parquet\ntest: t.parquet\ncategorical: [a]\nlabels: [{name: y, probability: n}, m]\n",
        "labels[1]: probability: name every label's probability column or none",
    ),
}


@pytest.mark.parametrize("case", list(SPEC_MISTAKES))
def test_a_wrong_spec_is_one_line_naming_the_file_and_the_key(tmp_path, case, capsys):
    text, message = SPEC_MISTAKES[case]
    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(pa.table({"a": ["x", "y"], "y": [0, 1], "n": [1.0, 2.0], "m": [1.0, 2.0]}), folder / "t.parquet")
    (folder / "dataset.yaml").write_text(text)
    with pytest.raises((SpecError, DataError)) as error:
        load_dataset("d", tmp_path)
    assert str(error.value).startswith(str(folder / "dataset.yaml")) and message in str(error.value), str(error.value)
    assert main(["train", "--dataset", "d", "--data-dir", str(tmp_path), "--no-save", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_column_the_file_lacks_names_the_file_and_the_column_before_reading(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(pa.table({"a": ["x"], "y": [0]}), folder / "train.parquet")
    pq.write_table(pa.table({"a": ["x"], "label": [0]}), folder / "test.parquet")
    (folder / "dataset.yaml").write_text("train: train.parquet\ntest: test.parquet\ncategorical: [a]\nlabels: [y]\n")
    with pytest.raises(DataError, match=r"test.parquet: no column 'y'.*the file has: a, label"):
        load_dataset("d", tmp_path)
    assert not (folder / "mtrec-cache" / "dataset").exists()


@pytest.mark.parametrize(
    "column, values, message",
    [
        ("n", [1.0, None, 3.0], "row 2, column n: missing value; expected a number (the spec's fill:"),
        ("y", [0, 2, 1], "row 2, column y: expected a label 0 or 1, found 2"),
        ("y", [0, None, 1], "row 2, column y: missing label"),
        ("n", [1.0, float("inf"), 3.0], "row 2, column n: expected a finite number"),
    ],
)
def test_a_bad_value_names_the_file_the_row_and_the_column_and_leaves_no_cache(tmp_path, column, values, message):
    folder = tmp_path / "d"
    folder.mkdir()
    table = {"a": ["x", "y", "z"], "n": [1.0, 2.0, 3.0], "y": [0, 1, 0]}
    table[column] = values
    pq.write_table(pa.table(table), folder / "train.parquet")
    pq.write_table(pa.table({"a": ["x"], "n": [1.0], "y": [0]}), folder / "test.parquet")
    (folder / "dataset.yaml").write_text("train: train.parquet\ntest: test.parquet\ncategorical: [a]\nnumerical: [n]\nlabels: [y]\n")
    with pytest.raises(DataError) as error:
        load_dataset("d", tmp_path)
    assert str(error.value) == f"{folder / 'train.parquet'}, {message}" or str(error.value).startswith(f"{folder / 'train.parquet'}, {message}")
    assert not (folder / "mtrec-cache" / "dataset").exists()


def test_label_probabilities_reach_the_table_and_a_bad_one_is_named(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    rows = {"a": ["x", "y", "z"], "y": [0, 1, 0], "p": [0.25, 0.5, 0.125]}
    pq.write_table(pa.table(rows), folder / "train.parquet")
    pq.write_table(pa.table({"a": ["x"], "y": [1], "p": [0.75]}), folder / "test.parquet")
    (folder / "dataset.yaml").write_text("train: train.parquet\ntest: test.parquet\ncategorical: [a]\nlabels: [{name: y, probability: p}]\n")
    dataset = load_dataset("d", tmp_path)
    assert dataset.train.probability_rows()[:, 0].tolist() == [0.25, 0.5, 0.125] and dataset.test.probabilities.tolist() == [[0.75]]
    pq.write_table(pa.table({**rows, "p": [0.25, 1.5, 0.125]}), folder / "train.parquet")
    with pytest.raises(DataError, match=r"train.parquet, row 2, column p: expected a probability in \[0, 1\], found 1.5"):
        load_dataset("d", tmp_path)


def test_a_row_that_breaks_a_task_relation_is_named(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(pa.table({"a": ["x", "y"], "click": [1, 0], "buy": [1, 1]}), folder / "t.parquet")
    (folder / "dataset.yaml").write_text("train: t.parquet\ntest: t.parquet\ncategorical: [a]\nlabels: [click, buy]\nimplies: {buy: click}\n")
    with pytest.raises(DataError, match=r"t.parquet, row 2, column buy: buy = 1 on a row without click"):
        load_dataset("d", tmp_path)


def test_tasks_named_before_the_task_they_imply_are_refused_with_the_order_needed(shop, capsys):
    # Stumble: --tasks buy,click dropped implies {buy: click}; ESMM then refused for a wrong reason.
    data_dir, _ = shop
    dataset = load_dataset("myshop", data_dir)
    assert dataset.select_tasks(("click", "buy")).schema.task_implies == ("", "click")
    assert dataset.select_tasks(("buy",)).schema.task_implies == ()  # a relation to a task left out is dropped
    assert dataset.select_tasks(("cart", "buy")).schema.task_implies == ()
    for model in ("esmm", "home"):
        assert main(["train", "--model", model, "--dataset", "myshop", "--data-dir", str(data_dir), "--tasks", "buy,cart,click",
                     "--no-save", "--no-progress"]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert err == "mtrec: error: --tasks buy,cart,click: buy implies click (the dataset spec's implies), so name click first: --tasks click,buy,cart\n"


@pytest.mark.parametrize("key", ["labels", "tasks"])
def test_a_spec_listing_a_task_before_the_task_it_implies_is_refused(tmp_path, key):
    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(pa.table({"a": ["x", "y"], "click": [1, 0], "buy": [1, 0]}), folder / "t.parquet")
    labels, tasks = ("[buy, click]", "") if key == "labels" else ("[click, buy]", "tasks: [buy, click]\n")
    (folder / "dataset.yaml").write_text(f"train: t.parquet\ntest: t.parquet\ncategorical: [a]\nlabels: {labels}\n{tasks}implies: {{buy: click}}\n")
    with pytest.raises(SpecError, match=f"implies.buy: buy implies click, so list click before buy in {key}$"):
        load_dataset("d", tmp_path)


def test_only_numerical_features_are_optional(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(pa.table({"a": ["x", "y"] * 20, "click": [1, 0] * 20, "buy": [0, 0] * 20}), folder / "t.parquet")
    (folder / "dataset.yaml").write_text("train: t.parquet\ntest: t.parquet\ncategorical: [a]\nlabels: [click, buy]\n")
    dataset = load_dataset("d", tmp_path)
    assert dataset.schema.numerical_num == 0 and dataset.train.numerical.shape == (40, 0)
    assert main(["train", "--dataset", "d", "--data-dir", str(tmp_path), "--embed-dim", "4", "--batch-size", "8", "--epochs", "1",
                 "--patience", "0", "--valid-fraction", "0", "--no-save", "--no-progress"]) == 0  # fmt: skip


SAMPLES = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("sample, tasks", [("ali-ccp", ("click", "purchase")), ("census-income", ("income", "never_married"))])
def test_the_real_samples_of_other_libraries_load_through_a_spec_with_their_values(tmp_path, sample, tasks):
    import shutil

    shutil.copytree(SAMPLES / sample, tmp_path / sample)
    spec = DatasetSpec.load(tmp_path / sample / "dataset.yaml")
    dataset = load_dataset(str(tmp_path / sample / "dataset.yaml"))
    assert dataset.schema.task_names == tasks and dataset.valid is not None
    lines = (tmp_path / sample / "train.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    assert len(dataset.train) == len(rows)
    for j, entry in enumerate(spec.numerical):
        column = header.index(entry.column)
        assert np.allclose(dataset.train.numerical[:, j], [float(r[column]) for r in rows])
    for t, label in enumerate(spec.labels):
        column = header.index(label.column)
        assert dataset.train.labels[:, t].tolist() == [int(float(r[column])) for r in rows]
    for f, entry in enumerate(spec.categorical):
        raw = [r[header.index(entry.column)] for r in rows]
        vocab = vocabulary(raw)  # CSV values are read as text: ties between equal counts go by their text
        assert dataset.train.categorical[:, f].tolist() == [vocab[v] for v in raw], entry.name


def test_inspect_reports_rows_rates_vocabularies_and_test_oov_share(shop, tmp_path, capsys):
    data_dir, parts = shop
    out = tmp_path / "inspect.json"
    assert main(["inspect", "myshop", "--data-dir", str(data_dir), "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = __import__("json").loads(out.read_text())
    train = concat([parts["train/a.parquet"], parts["train/b.parquet"]])
    test = parts["test.parquet"]
    assert report["splits"]["train"]["rows"] == 500 and report["splits"]["test"]["rows"] == 120
    assert math.isclose(report["splits"]["test"]["positive_rate"]["buy"], sum(test["buy"]) / 120)
    shop_field = next(f for f in report["fields"] if f["name"] == "shop_id")
    seen = set(train["shop_id"]) - {None}
    assert math.isclose(shop_field["test_out_of_vocabulary"], sum(v not in seen for v in test["shop_id"]) / 120)
    assert shop_field["missing"] == {"train": sum(v is None for v in train["shop_id"]), "test": sum(v is None for v in test["shop_id"])}
    tags = report["bags"][0]
    lengths = [min(len(t), 20) for t in train["tags"]]
    assert tags["length_max"] == max(lengths) and math.isclose(tags["length_mean"], sum(lengths) / 500)
    assert tags["empty_share"] == sum(n == 0 for n in lengths) / 500
    assert "shop_id" in printed and "tags" in printed and "price" in printed


def test_a_side_table_is_stored_once_and_joined_to_every_row_by_its_key(tmp_path):
    from mtreclib.data.loader import BatchLoader

    folder = tmp_path / "s"
    folder.mkdir()
    users = {"uid": [7, 3, 9], "history": [["a", "b", "a"], [], ["c"]], "history_weight": [[1.0, 2.0, 3.0], [], [0.5]]}
    pq.write_table(pa.table(users), folder / "users_train.parquet")
    pq.write_table(pa.table({"uid": [3, 9, 5], "history": [["b"], ["c", "d"], ["a"]], "history_weight": [[1.0], [1.0, 1.0], [2.0]]}),
                   folder / "users_test.parquet")  # fmt: skip
    rows = {"uid": [9, 7, 7, 3, 9, 7], "item": ["x", "y", "x", "z", "y", "x"], "click": [1, 0, 1, 0, 0, 1]}
    pq.write_table(pa.table(rows), folder / "train.parquet")
    pq.write_table(pa.table({"uid": [5, 3], "item": ["x", "w"], "click": [1, 0]}), folder / "test.parquet")
    (folder / "dataset.yaml").write_text(textwrap.dedent("""\
        train: train.parquet
        test: test.parquet
        tables:
          users: {key: uid, train: users_train.parquet, test: users_test.parquet}
        categorical: [item]
        multi_valued: [{name: history, table: users, weights: history_weight, pooling: sum, role: user}]
        labels: [click]
        """))
    dataset = load_dataset("s", tmp_path)
    bag = dataset.train.bags[0]
    assert len(bag.values) == 4 and len(bag.offsets) == 4  # the side table's values once, not once per row
    vocab = {"a": 1, "b": 2, "c": 3}  # each side-table row counted once, not once per row that refers to it

    by_user = {u: [vocab.get(v, 0) for v in h] for u, h in zip(users["uid"], users["history"])}
    lengths = dataset.train.bag_lengths(0)
    for i, uid in enumerate(rows["uid"]):
        r = dataset.train.side_rows[0][i]
        assert bag.values[bag.offsets[r] : bag.offsets[r + 1]].tolist() == by_user[uid] and lengths[i] == len(by_user[uid])
    loader = BatchLoader(dataset.train.select(np.array([4, 1, 3])), 3)
    batch = next(iter(loader))
    got = [batch.bags[0].values[batch.bags[0].offsets[b] : batch.bags[0].offsets[b + 1]].tolist() for b in range(3)]
    assert got == [by_user[9], by_user[7], by_user[3]]
    assert batch.bags[0].weights.tolist() == [0.5, 1.0, 2.0, 3.0]
    test = dataset.test.bags[0]
    assert [test.values[test.offsets[r] : test.offsets[r + 1]].tolist() for r in dataset.test.side_rows[0]] == [[1], [2]]  # test users' own rows
    assert main(["train", "--dataset", "s", "--data-dir", str(tmp_path), "--embed-dim", "4", "--batch-size", "2", "--epochs", "1",
                 "--patience", "0", "--valid-fraction", "0", "--no-save", "--no-progress"]) == 0  # fmt: skip


def test_a_row_whose_key_the_side_table_lacks_is_named(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    pq.write_table(pa.table({"uid": ["u1", "u2"], "history": [["a"], ["b"]]}), folder / "users.parquet")
    pq.write_table(pa.table({"uid": ["u1", "u3", "u2"], "item": ["x", "y", "z"], "click": [1, 0, 1]}), folder / "train.parquet")
    (folder / "dataset.yaml").write_text(
        "train: train.parquet\ntest: train.parquet\ntables: {users: {key: uid, file: users.parquet}}\n"
        "categorical: [item]\nmulti_valued: [{name: history, table: users}]\nlabels: [click]\n"
    )
    with pytest.raises(DataError, match=r"train.parquet, row 2, column uid: key 'u3' has no row in side table 'users'"):
        load_dataset("s", tmp_path)
    pq.write_table(pa.table({"uid": ["u1", "u2", "u1"], "history": [["a"], ["b"], ["c"]]}), folder / "users.parquet")
    with pytest.raises(DataError, match=r"users.parquet, column uid: key 'u1' is on more than one row"):
        load_dataset("s", tmp_path)
