"""The Ali-CCP recipe: generator-made downloads to Parquet rows and side-table rows checked value by value;
the spec, read and trained through by the library; conversions without a click; bad input."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from generators.aliccp import AliCCPConfig, archive_name, common_name, raw_texts, skeleton_name, write_download

from mtreclib.cli import main
from mtreclib.core.errors import DataError, UserError
from mtreclib.data.datasets import load_dataset
from mtreclib.data.loader import BatchLoader
from mtreclib.data.spec import DatasetSpec
from mtreclib.recipes import find_recipe, kit, run_recipe
from mtreclib.recipes.aliccp import features as aliccp_features

CONFIG = AliCCPConfig(train_samples=400, test_samples=150, common_rows=40, history_mean=3.0, seed=3)

# The ESMM paper's fields, written out here independently of the recipe.
SINGLE = ["101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "216", "301"]
HISTORY = ["109_14", "110_14", "127_14", "150_14"]  # user side, multi-valued: the side table
ITEM_MULTI = ["210", "508", "509", "702", "853"]
MULTI = HISTORY + ITEM_MULTI
USER = {"101", "121", "122", "124", "125", "126", "127", "128", "129", "109_14", "110_14", "127_14", "150_14"}
ITEM = {"205", "206", "207", "210", "216"}
OUTPUT_FILES = ["common_test.parquet", "common_train.parquet", "dataset.yaml", "test.parquet", "train.parquet"]


def preprocess(data_dir: Path, **options: object) -> dict[str, SimpleNamespace]:
    """The recipe as ``mtrec preprocess`` runs it; per split, its rows, clicks, conversions and counts by name."""
    report = run_recipe("AliCCP", data_dir, **options)
    return {
        split: SimpleNamespace(rows=t.rows, clicks=t.positives["click"], conversions=t.positives["conversion"], **t.counts)
        for split, t in report.outputs.items()
    }


def features_of(text: str) -> list[tuple[str, int, float]]:
    """A feature list as (field, id, value), by plain string splitting."""
    out = []
    for feature in text.split("\x01") if text else []:
        field, rest = feature.split("\x02")
        ident, value = rest.split("\x03")
        out.append((field, int(ident), float(value)))
    return out


def signed(key: str) -> int:
    """16 hex digits as the int64 the recipe writes (two's complement)."""
    number = int(key, 16)
    return number - (1 << 64) if number >= 1 << 63 else number


def common_lines(files: dict[str, bytes], split: str) -> dict[str, list[tuple[str, int, float]]]:
    """Each common-features line's features, by its hex index, in file order."""
    common = {}
    for line in files[common_name(split)].decode().splitlines():
        key, _, text = line.split(",")
        common[key] = features_of(text)
    return common


def skeleton_lines(files: dict[str, bytes], split: str, drop_unclicked: bool = False) -> list[tuple[int, int, int, str, str]]:
    """(sample id, click, conversion, hex index, feature text) of each skeleton line kept."""
    lines = []
    for line in files[skeleton_name(split)].decode().splitlines():
        sample_id, click, conversion, key, _, text = line.split(",")
        if drop_unclicked and (click, conversion) == ("0", "1"):
            continue
        lines.append((int(sample_id), int(click), int(conversion), key, text))
    return lines


def lists_of(features: list[tuple[str, int, float]], names: list[str]) -> dict:
    """Each multi-valued field's ids and float32 values, in the order of the line."""
    out = {}
    for name in names:
        out[name] = [ident for field, ident, _ in features if field == name]
        out[f"{name}_weight"] = [float(np.float32(value)) for field, _, value in features if field == name]
    return out


def expected_rows(files: dict[str, bytes], split: str, drop_unclicked: bool = False) -> list[dict]:
    """Impression rows by a per-line join of the raw text: skeleton order, each with its line's profile."""
    common = common_lines(files, split)
    rows = []
    for sample_id, click, conversion, key, text in skeleton_lines(files, split, drop_unclicked):
        features = common[key] + features_of(text)
        row = {"sample_id": sample_id, "common_feature_index": signed(key), "click": click, "conversion": conversion}
        for name in SINGLE:
            row[name] = next((ident for field, ident, _ in features if field == name), None)
        row.update(lists_of(features_of(text), ITEM_MULTI))
        rows.append(row)
    return rows


def expected_side(files: dict[str, bytes], split: str, drop_unclicked: bool = False) -> list[dict]:
    """Side-table rows: each common line some kept impression refers to, in file order, with its histories."""
    used = {key for *_, key, _ in skeleton_lines(files, split, drop_unclicked)}
    return [
        {"common_feature_index": signed(key), **lists_of(features, HISTORY)} for key, features in common_lines(files, split).items() if key in used
    ]


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return raw_texts(CONFIG)


def read_split(data_dir: Path, split: str) -> list[dict]:
    return pq.read_table(data_dir / "AliCCP" / f"{split}.parquet").to_pylist()


def read_side(data_dir: Path, split: str) -> list[dict]:
    return pq.read_table(data_dir / "AliCCP" / f"common_{split}.parquet").to_pylist()


def assert_no_output(data_dir: Path) -> None:
    for folder in (data_dir, data_dir / "AliCCP"):
        left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        assert not [n for n in left if n.endswith(".parquet") or n == "dataset.yaml" or ".tmp-" in n], left


def assert_each_impression_finds_its_line(files: dict[str, bytes], data_dir: Path, split: str, drop_unclicked: bool = False) -> None:
    """Every side-table key once, every impression's key among them, and that row holds the raw line's histories."""
    side = read_side(data_dir, split)
    by_key = {row["common_feature_index"]: row for row in side}
    assert len(by_key) == len(side)  # each common line's values once
    common = common_lines(files, split)
    rows = read_split(data_dir, split)
    lines = skeleton_lines(files, split, drop_unclicked)
    assert len(rows) == len(lines)
    for row, (sample_id, *_, key, _) in zip(rows, lines):
        assert row["sample_id"] == sample_id
        found = by_key[row["common_feature_index"]]
        assert {k: v for k, v in found.items() if k != "common_feature_index"} == lists_of(common[key], HISTORY)
    assert set(by_key) == {row["common_feature_index"] for row in rows}  # no line that no impression uses


@pytest.mark.parametrize(
    "layout, folder, skeleton_first",
    [("packed", None, True), ("packed", "AliCCP", False), ("unpacked", "AliCCP", True), ("unpacked", None, True)],
)
def test_generated_download_converts_to_exactly_the_expected_rows(tmp_path, files, layout, folder, skeleton_first):
    write_download(tmp_path, files, layout=layout, folder=folder, skeleton_first=skeleton_first)
    reports = preprocess(tmp_path, progress=False, chunk_bytes=4096)  # many pieces per file
    for split in ("train", "test"):
        expected = expected_rows(files, split)
        assert read_split(tmp_path, split) == expected  # every value, in skeleton order
        side = expected_side(files, split)
        assert read_side(tmp_path, split) == side  # every history value, in line order, once a line
        assert_each_impression_finds_its_line(files, tmp_path, split)
        report = reports[split]
        assert report.rows == len(expected) and report.common_rows == CONFIG.common_rows
        assert report.unused_common_rows == CONFIG.common_rows - len(side) and report.unclicked_conversions == 0
        assert report.common_features == sum(1 for features in common_lines(files, split).values() for f in features if f[0] in HISTORY)
        assert report.clicks == sum(r["click"] for r in expected) and report.conversions == sum(r["conversion"] for r in expected)
    assert sorted(p.name for p in (tmp_path / "AliCCP").iterdir() if p.suffix in (".parquet", ".yaml") or p.name.startswith(".")) == OUTPUT_FILES


def test_the_generator_exercises_missing_fields_runs_high_keys_unused_lines_and_both_labels(files):
    rows = expected_rows(files, "train")
    side = expected_side(files, "train")
    assert any(r["216"] is None for r in rows) and any(r["121"] is None for r in rows)
    assert any(r["508"] == [] for r in rows) and any(len(r["210"]) > 1 for r in rows)
    assert any(len(s["109_14"]) > 1 for s in side) and any(s["109_14"] == [] for s in side)
    assert any(r["common_feature_index"] < 0 for r in rows) and any(r["common_feature_index"] > 0 for r in rows)
    keys = [r["common_feature_index"] for r in rows]
    assert sum(a == b for a, b in zip(keys, keys[1:])) > len(keys) / 2  # lines share a common row in runs
    assert 0 < CONFIG.common_rows - len(side) and 0 < CONFIG.common_rows - len(expected_side(files, "test"))  # unused lines
    assert {(r["click"], r["conversion"]) for r in rows} == {(0, 0), (1, 0), (1, 1)}
    assert raw_texts(CONFIG) == files  # deterministic


def test_multi_valued_fields_keep_every_value_in_order_wherever_they_are_in_the_line(tmp_path):
    """torch-rechub's preprocessing keeps only the last value of a field; every value must stay."""
    key, unused = "0123456789abcdef", "fedcba9876543210"
    user = ["109_14\x02500\x031.5", "101\x027\x031.0", "109_14\x02300\x030.25", "110_14\x0211\x032.0", "109_14\x02500\x030.75"]
    item = ["210\x0230\x031.0", "205\x0299\x031.0", "210\x0210\x031.0", "508\x021\x030.5", "210\x0230\x031.0"]
    files = {
        common_name("train"): f"{unused},1,109_14\x021\x031.0\n{key},5,{chr(1).join(user)}\n".encode(),
        skeleton_name("train"): f"1,1,1,{key},5,{chr(1).join(item)}\n2,0,0,{key},0,\n".encode(),
        common_name("test"): f"{key},1,101\x027\x031.0\n".encode(),
        skeleton_name("test"): f"1,0,0,{key},1,205\x0299\x031.0\n".encode(),
    }
    write_download(tmp_path, files)
    reports = preprocess(tmp_path, progress=False)
    first, second = read_split(tmp_path, "train")
    [side] = read_side(tmp_path, "train")  # the line no impression uses is left out
    assert reports["train"].unused_common_rows == 1 and side["common_feature_index"] == signed(key)
    assert side["109_14"] == [500, 300, 500] and side["109_14_weight"] == [1.5, 0.25, 0.75]
    assert side["110_14"] == [11] and side["127_14"] == [] and side["150_14_weight"] == []
    assert first["210"] == [30, 10, 30] and first["210_weight"] == [1.0, 1.0, 1.0]
    assert first["508_weight"] == [0.5] and first["205"] == 99 and first["101"] == second["101"] == 7
    assert second["210"] == [] and second["205"] is None and second["301"] is None
    assert "109_14" not in first and "109_14_weight" not in first  # on the side table only
    assert read_side(tmp_path, "test") == [{"common_feature_index": signed(key), **lists_of([], HISTORY)}]


def test_row_groups_are_cut_by_size_without_changing_the_rows(tmp_path, files, monkeypatch):
    monkeypatch.setattr(kit.output, "ROW_GROUP_BYTES", 2000)
    write_download(tmp_path, files)
    reports = preprocess(tmp_path, progress=False, chunk_bytes=2048)
    rows = pq.ParquetFile(tmp_path / "AliCCP" / "train.parquet").metadata
    assert rows.num_row_groups > 10 and reports["train"].rows == CONFIG.train_samples
    side = pq.ParquetFile(tmp_path / "AliCCP" / "common_train.parquet").metadata
    assert side.num_row_groups > 3  # after the rewrite without unused lines
    assert read_split(tmp_path, "train") == expected_rows(files, "train") and read_side(tmp_path, "train") == expected_side(files, "train")
    monkeypatch.setattr(kit.output, "ROW_GROUP_BYTES", 1 << 30)
    monkeypatch.setattr(kit.output, "ROW_GROUP_ROWS", 100)
    reports = preprocess(tmp_path, progress=False, chunk_bytes=1 << 20)  # one piece: cut by rows alone
    rows = pq.ParquetFile(tmp_path / "AliCCP" / "train.parquet").metadata
    assert [rows.row_group(i).num_rows for i in range(rows.num_row_groups)] == [100, 100, 100, 100]
    assert read_split(tmp_path, "train") == expected_rows(files, "train")


def test_the_spec_names_the_parquet_columns_the_side_table_the_roles_and_the_label_rule(tmp_path, files):
    write_download(tmp_path, files)
    lines = run_recipe("AliCCP", tmp_path, progress=False).lines()
    assert find_recipe("AliCCP").names == ("AliCCP",) and "unclicked_conversions" in find_recipe("AliCCP").Config.keys()
    clicks = sum(r["click"] for r in expected_rows(files, "train"))
    assert lines[0].startswith(f"train: {CONFIG.train_samples:,} rows; click {100 * clicks / CONFIG.train_samples:.3g}%")
    assert f"{len(expected_side(files, 'train'))} common-feature lines in common_train.parquet" in lines[0]
    assert lines[-1].startswith("read ") and f"in {tmp_path / 'AliCCP'}/" in lines[-1]
    text = (tmp_path / "AliCCP" / "dataset.yaml").read_text()
    assert text.startswith("# AliCCP: Ali-CCP") and "sample_train.tar.gz" in text
    spec = yaml.safe_load(text)
    assert list(spec) == ["name", "format", "train", "test", "tables", "categorical", "multi_valued", "numerical", "labels", "implies", "group"]
    assert (spec["name"], spec["format"], spec["train"], spec["test"]) == ("AliCCP", "parquet", "train.parquet", "test.parquet")
    assert spec["tables"] == {"common": {"key": "common_feature_index", "train": "common_train.parquet", "test": "common_test.parquet"}}
    assert spec["labels"] == ["click", "conversion"] and spec["implies"] == {"conversion": "click"}
    assert spec["numerical"] == [] and spec["group"] == "common_feature_index"
    assert [c["name"] for c in spec["categorical"]] == SINGLE
    assert sorted(c["name"] for c in spec["multi_valued"]) == sorted(MULTI)
    for entry in spec["categorical"] + spec["multi_valued"]:
        expected_role = "user" if entry["name"] in USER else "item" if entry["name"] in ITEM else "context"
        assert entry["role"] == expected_role, entry
    for entry in spec["multi_valued"]:
        assert entry["weights"] == f"{entry['name']}_weight" and entry["pooling"] == "sum"
        assert entry.get("table") == ("common" if entry["name"] in HISTORY else None), entry
    loaded = DatasetSpec.load(tmp_path / "AliCCP" / "dataset.yaml")  # the library's reading of it
    for split in ("train", "test"):
        schema = pq.read_schema(tmp_path / "AliCCP" / spec[split])
        side = pq.read_schema(tmp_path / "AliCCP" / spec["tables"]["common"][split])
        assert set(loaded.columns_needed()) == set(schema.names) - {"sample_id"}
        assert list(loaded.table_columns("common")) == side.names == ["common_feature_index"] + [f"{h}{s}" for h in HISTORY for s in ("", "_weight")]
        for entry in spec["categorical"]:
            assert schema.field(entry["name"]).type == pa.int64()
        for entry in spec["multi_valued"]:
            where = side if entry.get("table") else schema
            assert entry["name"] not in (schema if entry.get("table") else side).names
            assert where.field(entry["name"]).type == pa.list_(pa.int64())
            assert where.field(entry["weights"]).type == pa.list_(pa.float32())
        for label in spec["labels"]:
            assert schema.field(label).type == pa.int8()
        assert schema.field(spec["group"]).type == side.field("common_feature_index").type == pa.int64()


def _vocabulary(files: dict[str, bytes], field: str) -> dict[int, int]:
    """The spec's build rule over the training side table: each line's values counted once per line, ids by
    decreasing count, ties by value (docs/dataset-spec.md)."""
    counts: dict[int, int] = {}
    for row in expected_side(files, "train"):
        for value in row[field]:
            counts[value] = counts.get(value, 0) + 1
    return {value: i + 1 for i, value in enumerate(sorted(counts, key=lambda v: (-counts[v], v)))}


def test_preprocess_then_train_through_the_spec_and_batches_carry_each_impressions_user_histories(tmp_path, files):
    write_download(tmp_path, files)
    assert main(["preprocess", "--dataset", "AliCCP", "--data-dir", str(tmp_path), "--no-progress"]) == 0
    assert main(["train", "--dataset", "AliCCP", "--data-dir", str(tmp_path), "--max-steps", "2", "--embed-dim", "4",
                 "--batch-size", "64", "--no-save", "--no-progress"]) == 0  # fmt: skip
    dataset = load_dataset("AliCCP", tmp_path, progress=False)
    names = [bag.name for bag in dataset.schema.bags]
    assert names == MULTI
    for split, table in (("train", dataset.train), ("test", dataset.test)):
        lines = skeleton_lines(files, split)
        common = common_lines(files, split)
        side = expected_side(files, split)
        assert len(table) == len(lines)
        for k, field in enumerate(HISTORY):  # stored once a line, not once an impression
            assert len(table.bags[k].values) == sum(len(row[field]) for row in side) < sum(len(lists_of(common[line[3]], [field])[field]) for line in lines)
        sampled = np.random.default_rng(0).choice(len(lines), 40, replace=False)
        batch = next(iter(BatchLoader(table.select(sampled), len(sampled))))
        for k, field in enumerate(HISTORY):
            vocabulary = _vocabulary(files, field)
            bag = batch.bags[k]
            for b, i in enumerate(sampled):
                raw = lists_of(common[lines[i][3]], [field])  # the raw common line of impression i
                start, stop = int(bag.offsets[b]), int(bag.offsets[b + 1])
                assert bag.values[start:stop].tolist() == [vocabulary.get(v, 0) for v in raw[field]], (split, field, i)
                assert bag.weights[start:stop].tolist() == raw[f"{field}_weight"], (split, field, i)
        labels = batch.labels.long().tolist()
        assert labels == [[lines[i][1], lines[i][2]] for i in sampled]


def _unclicked_files(files: dict[str, bytes]) -> tuple[dict[str, bytes], str, int]:
    """``files`` with every impression of one common line, and a few others, turned into conversions
    without a click; returns the new files, that line's index and the number of lines changed."""
    lines = files[skeleton_name("train")].decode().split("\n")
    keys = [line.split(",")[3] for line in lines if line]
    victim = keys[30]
    changed = 0
    for i, line in enumerate(lines):
        if line and (line.split(",")[3] == victim or i in (3, 50, 51)):
            lines[i] = re.sub(r"^(\d+),\d,\d,", r"\1,0,1,", line)
            changed += 1
    return {**files, skeleton_name("train"): "\n".join(lines).encode()}, victim, changed


def test_conversions_without_a_click_are_dropped_by_default_and_counted(tmp_path, files):
    """The real download goes through without a rerun: torch-rechub's and AITM's reading by default."""
    edited, victim, changed = _unclicked_files(files)
    write_download(tmp_path, edited)
    reports = preprocess(tmp_path, progress=False, chunk_bytes=2048)
    assert reports["train"].unclicked_conversions == changed and reports["test"].unclicked_conversions == 0
    expected = expected_rows(edited, "train", drop_unclicked=True)
    assert read_split(tmp_path, "train") == expected and len(expected) == CONFIG.train_samples - changed
    assert read_side(tmp_path, "train") == expected_side(edited, "train", drop_unclicked=True)
    assert signed(victim) not in {row["common_feature_index"] for row in read_side(tmp_path, "train")}  # its impressions all dropped
    assert_each_impression_finds_its_line(edited, tmp_path, "train", drop_unclicked=True)
    assert read_split(tmp_path, "test") == expected_rows(files, "test")
    assert yaml.safe_load((tmp_path / "AliCCP" / "dataset.yaml").read_text())["implies"] == {"conversion": "click"}


def test_kept_conversions_without_a_click_are_written_as_labelled_and_no_implies_is_declared(tmp_path, files):
    """x-deeplearning's reading: every line, its labels as written."""
    edited, _, changed = _unclicked_files(files)
    write_download(tmp_path, edited)
    reports = preprocess(tmp_path, progress=False, chunk_bytes=2048, unclicked_conversions="keep")
    assert reports["train"].unclicked_conversions == changed
    assert read_split(tmp_path, "train") == expected_rows(edited, "train")  # the (click 0, conversion 1) rows included
    assert read_side(tmp_path, "train") == expected_side(edited, "train")
    text = (tmp_path / "AliCCP" / "dataset.yaml").read_text()
    assert "implies" not in yaml.safe_load(text) and "Conversions without a click were kept as labelled" in text
    dataset = load_dataset("AliCCP", tmp_path, progress=False)  # the library reads rows that break the rule when none is declared
    assert not any(dataset.schema.task_implies) and len(dataset.train) > 0
    # Kept where there are none: the rule holds, and is declared.
    write_download(tmp_path / "clean", files)
    preprocess(tmp_path / "clean", progress=False, unclicked_conversions="keep")
    assert yaml.safe_load((tmp_path / "clean" / "AliCCP" / "dataset.yaml").read_text())["implies"] == {"conversion": "click"}


def test_stop_makes_the_first_conversion_without_a_click_an_error_naming_its_line(tmp_path, files):
    edited, _, _ = _unclicked_files(files)
    write_download(tmp_path, edited)
    where = r"sample_train.tar.gz > sample_skeleton_train.csv, line 4, column conversion: a conversion without a click"
    with pytest.raises(DataError, match=where + r" \(--unclicked-conversions stop\); --unclicked-conversions drop leaves"):
        preprocess(tmp_path, progress=False, chunk_bytes=2048, unclicked_conversions="stop")
    assert_no_output(tmp_path)


def test_the_cli_option_reads_them_each_way_and_other_recipes_refuse_it(tmp_path, files, capsys):
    edited, _, changed = _unclicked_files(files)
    write_download(tmp_path, edited)
    command = ["preprocess", "--dataset", "AliCCP", "--data-dir", str(tmp_path), "--no-progress"]
    assert main(command) == 0
    assert f"{changed} conversions without a click dropped" in capsys.readouterr().out
    assert main([*command, "--unclicked-conversions", "keep"]) == 0
    assert f"{changed} conversions without a click kept (click 0, conversion 1)" in capsys.readouterr().out
    assert main([*command, "--unclicked-conversions", "stop"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 4, column conversion" in err and "--unclicked-conversions drop" in err
    assert main([*command, "--unclicked-conversions", "maybe"]) == 2
    assert "unclicked_conversions (--unclicked-conversions) must be one of drop, keep, stop, got 'maybe'" in capsys.readouterr().err
    assert main(["preprocess", "--dataset", "CensusIncome", "--data-dir", str(tmp_path), "--unclicked-conversions", "drop"]) == 2
    assert "--unclicked-conversions is an option of AliCCP, not of CensusIncome" in capsys.readouterr().err


# The header of torch-rechub's processed Ali-CCP rows (../shared/data/samples/ali-ccp/train.csv, real
# rows label-encoded to one value a field; D* are the last value's weight, min-max scaled).
REAL_SAMPLE_HEADER = (
    "click,purchase,101,121,122,124,125,126,127,128,129,205,206,207,210,216,508,509,702,853,301,"
    "109_14,110_14,127_14,150_14,D109_14,D110_14,D127_14,D150_14,D508,D509,D702,D853"
)


def test_the_fields_are_those_of_the_real_processed_sample():
    header = REAL_SAMPLE_HEADER.split(",")
    fields = [name for name in header if name not in ("click", "purchase") and not name.startswith("D")]
    assert sorted(f.name for f in aliccp_features.FIELDS) == sorted(fields) == sorted(SINGLE + MULTI)
    weighted = {f.name for f in aliccp_features.FIELDS if f.multi} - {"210"}  # 210's values are all 1
    assert {name[1:] for name in header if name.startswith("D")} == weighted


def _edit(text: bytes, line: int, change) -> bytes:
    """``text`` with its 1-based ``line`` replaced by ``change(line_text)``."""
    lines = text.decode().split("\n")
    lines[line - 1] = change(lines[line - 1])
    return "\n".join(lines).encode()


def _columns(change_columns):
    """A line edit that changes the list of comma-separated values."""

    def change(line: str) -> str:
        values = line.split(",")
        change_columns(values)
        return ",".join(values)

    return change


def _feature(index: int, change_feature):
    """A line edit that changes feature ``index`` (0-based) of the line's list (its last value)."""

    def change(values: list[str]) -> None:
        features = values[-1].split("\x01")
        features[index] = change_feature(features[index])
        values[-1] = "\x01".join(features)

    return _columns(change)


def _set(position: int, value: str):
    def change(values: list[str]) -> None:
        values[position] = value

    return _columns(change)


def _add_feature(text: str):
    def change(values: list[str]) -> None:
        values[-1] += "\x01" + text
        values[-2] = str(int(values[-2]) + 1)

    return _columns(change)


SKELETON_TRAIN = "sample_train.tar.gz > sample_skeleton_train.csv"
COMMON_TEST = "sample_test.tar.gz > common_features_test.csv"
BAD_TEXT = {
    # case: (file, line, edit, where, message)
    "a missing value": (skeleton_name("train"), 7, _columns(lambda v: v.pop(2)), SKELETON_TRAIN + ", line 7:", "expected 6 values, found 5"),
    "a click that is no integer": (
        skeleton_name("train"), 3, _set(1, "x"), SKELETON_TRAIN + ", line 3, column click:", "expected an integer, found 'x'",
    ),
    "a click label 2": (skeleton_name("train"), 11, _set(1, "2"), SKELETON_TRAIN + ", line 11, column click:", "expected a label 0 or 1, found 2"),
    "a feature count that does not match": (
        skeleton_name("train"), 9, _columns(lambda v: v.__setitem__(4, str(int(v[4]) + 1))),
        SKELETON_TRAIN + ", line 9, column feature_count:", "features, its list holds",
    ),
    "a feature with the wrong separator": (
        skeleton_name("train"), 4, _feature(1, lambda f: f.replace("\x03", "\x02")),
        SKELETON_TRAIN + ", line 4, column feature_list:", "feature 2 of the list, '", "expected field\\x02id\\x03value",
    ),
    "an empty feature": (
        skeleton_name("train"), 5, _add_feature(""), SKELETON_TRAIN + ", line 5, column feature_list:", "expected field\\x02id\\x03value",
    ),
    "a feature id that is no integer": (
        skeleton_name("train"), 6, _feature(0, lambda f: re.sub("\x02\\d+", "\x0212a", f)),
        SKELETON_TRAIN + ", line 6, column feature_list:", "feature 1 of the list", "expected an integer feature id, found '12a'",
    ),
    "an id with an underscore": (
        skeleton_name("train"), 6, _feature(3, lambda f: re.sub("\x02(\\d)", "\x021_", f)),
        SKELETON_TRAIN + ", line 6, column feature_list:", "feature 4 of the list", "expected an integer feature id, found '1_",
    ),
    "a value that is no number": (
        skeleton_name("train"), 8, _feature(2, lambda f: re.sub("\x03.*", "\x03one", f)),
        SKELETON_TRAIN + ", line 8, column feature_list:", "feature 3 of the list", "expected a number, found 'one'",
    ),
    "an infinite value": (
        skeleton_name("train"), 8, _feature(0, lambda f: re.sub("\x03.*", "\x03inf", f)),
        SKELETON_TRAIN + ", line 8, column feature_list:", "expected a finite value",
    ),
    "an unknown field": (
        skeleton_name("train"), 12, _feature(2, lambda f: "999" + f[f.index("\x02"):]),
        SKELETON_TRAIN + ", line 12, column feature_list:", "feature 3 of the list, '999\\x02", "unknown field",
    ),
    "a user field in the skeleton": (
        skeleton_name("train"), 13, lambda line: line.replace("301\x02", "101\x02", 1),
        SKELETON_TRAIN + ", line 13, column feature_list:", "field 101 (user id) belongs in the common features",
    ),
    "a single-valued field twice": (
        skeleton_name("train"), 14, _add_feature("205\x021234\x031.0"),
        SKELETON_TRAIN + ", line 14, column feature_list:", "field 205 (item id) has one feature a line; this line has 2",
    ),
    "a single-valued field with a weight": (
        skeleton_name("train"), 15, lambda line: re.sub("205\x02(\\d+)\x031.0", "205\x02\\1\x030.5", line, count=1),
        SKELETON_TRAIN + ", line 15, column feature_list:", "field 205 (item id) is one-hot; expected the value 1",
    ),
    "an index that is not hex": (
        skeleton_name("train"), 16, _set(3, "zz23456789abcdef"),
        SKELETON_TRAIN + ", line 16, column common_feature_index:", "expected 16 hex digits, found 'zz23456789abcdef'",
    ),
    "an index with no common line": (
        skeleton_name("train"), 17, _set(3, "0000000000000000"),
        SKELETON_TRAIN + ", line 17, column common_feature_index:", "common feature index 0000000000000000 has no line in",
    ),
    "an empty line": (skeleton_name("train"), 18, lambda line: "", SKELETON_TRAIN + ", line 18:", "an empty line; expected 6 values"),
    "an item field in the common features": (
        common_name("test"), 6, _feature(0, lambda f: "205" + f[f.index("\x02"):]),
        COMMON_TEST + ", line 6, column feature_list:", "field 205 (item id) belongs in the sample skeleton",
    ),
    "a feature id beyond 64 bits": (
        common_name("test"), 2, _feature(1, lambda f: re.sub("\x02\\d+", "\x0299999999999999999999", f)),
        COMMON_TEST + ", line 2, column feature_list:", "feature 2 of the list", "expected an integer feature id, found '99999999999999999999'",
    ),
    "a negative feature id": (
        common_name("test"), 3, _feature(0, lambda f: re.sub("\x02\\d+", "\x02-5", f)),
        COMMON_TEST + ", line 3, column feature_list:", "expected a feature id of 0 or more",
    ),
    "a missing feature count": (
        common_name("test"), 4, _set(1, ""), COMMON_TEST + ", line 4, column feature_count:", "missing value; expected an integer",
    ),
    "a repeated common index": (
        common_name("test"), CONFIG.common_rows + 1, lambda line: None,  # replaced below: a copy of line 2
        COMMON_TEST + f", line {CONFIG.common_rows + 1}, column common_feature_index:", "has a second line (the first is line 2)",
    ),
}  # fmt: skip


def _bad_files(files: dict[str, bytes], case: str) -> dict[str, bytes]:
    name, line, edit = BAD_TEXT[case][:3]
    if case == "a repeated common index":
        text = files[name]
        return {**files, name: text + text.split(b"\n")[1] + b"\n"}
    return {**files, name: _edit(files[name], line, edit)}


@pytest.mark.parametrize("case", list(BAD_TEXT))
def test_bad_raw_lines_stop_with_one_line_naming_file_line_and_column_and_write_nothing(tmp_path, files, case):
    where, *messages = BAD_TEXT[case][3:]
    write_download(tmp_path, _bad_files(files, case))
    with pytest.raises(DataError) as error:
        preprocess(tmp_path, progress=False, chunk_bytes=2048)
    text = str(error.value)
    assert "\n" not in text and text.startswith(str(tmp_path / where)), text
    for message in messages:
        assert message in text, text
    assert_no_output(tmp_path)


@pytest.mark.parametrize("name", [skeleton_name("train"), common_name("test")])
def test_an_empty_file_is_an_error(tmp_path, files, name):
    write_download(tmp_path, {**files, name: b""}, layout="unpacked", folder="AliCCP")
    with pytest.raises(DataError, match=rf"AliCCP/{name}: the file is empty; expected rows of \d values"):
        preprocess(tmp_path, progress=False)
    assert_no_output(tmp_path)


def test_a_failed_run_leaves_an_earlier_output_untouched(tmp_path, files):
    write_download(tmp_path, files)
    preprocess(tmp_path, progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "AliCCP").iterdir()}
    assert sorted(before) == OUTPUT_FILES
    write_download(tmp_path, _bad_files(files, "an index with no common line"))
    with pytest.raises(DataError):
        preprocess(tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "AliCCP").iterdir()} == before


def test_a_truncated_archive_is_an_error(tmp_path, files):
    write_download(tmp_path, files, skeleton_first=False)
    archive = tmp_path / archive_name("train")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"sample_train.tar.gz( > \S+)?: (the archive is corrupt or truncated|cannot read the archive) .*complete\?"):
        preprocess(tmp_path, progress=False)
    assert_no_output(tmp_path)


def test_a_file_that_is_no_archive_is_an_error(tmp_path, files):
    write_download(tmp_path, files)
    (tmp_path / archive_name("test")).write_bytes(b"PK\x03\x04 not a tar.gz" * 20)
    with pytest.raises(DataError, match=r"sample_test.tar.gz( > \S+)?: cannot read the archive \(not a gzip file\)"):
        preprocess(tmp_path, progress=False)
    assert_no_output(tmp_path)


def test_an_archive_without_the_file_is_an_error(tmp_path, files):
    write_download(tmp_path, files)
    with tarfile.open(tmp_path / archive_name("train"), "w:gz") as archive:
        archive.add(__file__, arcname="sample_train/readme.txt")
    with pytest.raises(DataError, match=r"sample_train.tar.gz: holds no common_features_train.csv \(it holds sample_train/readme.txt\)"):
        preprocess(tmp_path, progress=False)
    assert_no_output(tmp_path)


def test_a_missing_download_names_the_file_the_places_looked_and_the_page(tmp_path):
    expected = r"sample_skeleton_train.csv not found \(looked for .*sample_train.tar.gz\); download sample_train.tar.gz from https://tianchi"
    with pytest.raises(UserError, match=expected + r".aliyun.com/dataset/408"):
        preprocess(tmp_path, progress=False)
    assert not (tmp_path / "AliCCP").exists()
