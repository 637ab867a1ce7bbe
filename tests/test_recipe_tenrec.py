"""The Tenrec recipe: generator-made files of the publisher's layout to Parquet rows checked value by value,
the spec and its split, training through it, and bad input in one line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from generators.tenrec import TenrecConfig, csv_text, write_download

from mtreclib.cli import main
from mtreclib.core.errors import DataError, UserError
from mtreclib.data.datasets import load_dataset
from mtreclib.recipes import run_recipe

CONFIG = TenrecConfig(users=40, seed=3)
TASKS = ["click", "follow", "like", "share"]


def expected_rows(text: bytes) -> list[dict]:
    """What each raw line becomes, by the rules of docs/recipes/tenrec.md, in plain Python."""

    def number(value: str) -> int | None:
        return None if value == "\\N" else int(value)

    out = []
    for raw in csv.DictReader(io.StringIO(text.decode())):
        row = {"user_id": int(raw["user_id"]), "item_id": int(raw["item_id"])}
        row |= {name: number(raw[name]) for name in ("video_category", "gender", "age")}
        if "hist_1" in raw:
            row["hist"] = [int(raw[f"hist_{i}"]) for i in range(1, 11) if raw[f"hist_{i}"] not in ("0", "\\N")]
        row |= {name: int(raw[name]) for name in TASKS}
        row["watching_times"] = number(raw["watching_times"])
        out.append(row)
    return out


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def preprocess(data_dir: Path, *flags: str) -> int:
    return main(["preprocess", "--dataset", "Tenrec", "--data-dir", str(data_dir), "--no-progress", *flags])


@pytest.mark.parametrize("file", ["QK-video.csv", "QB-video.csv", "ctr_data_1M.csv"])
def test_each_file_converts_to_exactly_the_expected_rows_and_its_spec(tmp_path, file, capsys):
    text = csv_text(CONFIG, file)
    write_download(tmp_path, {file: text})
    assert preprocess(tmp_path, *([] if file == "QK-video.csv" else ["--file", file])) == 0
    stem = Path(file).stem
    folder = tmp_path / "Tenrec"
    rows = read_rows(folder / f"{stem}.parquet")
    assert rows == expected_rows(text)  # every value, in file order
    assert any(r["video_category"] is None for r in rows) and any(r["gender"] is None for r in rows)
    out = capsys.readouterr().out
    clicks = sum(r["click"] for r in rows)
    assert out.startswith(f"{stem}: {len(rows):,} rows; click {100 * clicks / len(rows):.3g}%, follow ")
    assert "next: mtrec train --dataset Tenrec" in out
    spec = yaml.safe_load((folder / "dataset.yaml").read_text())
    assert spec == {**yaml.safe_load((folder / f"{stem}.yaml").read_text()), "name": "Tenrec"}
    assert (spec["source"], spec["split"]) == (f"{stem}.parquet", {"method": "random", "valid": 0.1, "test": 0.1, "seed": 0})
    watching = {"name": "watching_times", "type": "regression", "transform": "log1p", "fill": 0}  # optional, by --tasks
    assert spec["labels"] == [*TASKS, watching] and spec["tasks"] == TASKS and "implies" not in spec and spec["group"] == "user_id"
    assert [c["name"] for c in spec["categorical"]] == ["user_id", "item_id", "video_category", "gender", "age"]
    assert spec.get("multi_valued", []) == ([{"name": "hist", "pooling": "mean", "role": "user"}] if file == "ctr_data_1M.csv" else [])
    features = {c["name"] for key in ("categorical", "multi_valued") for c in spec.get(key, [])}
    assert "watching_times" not in features and not features & set(TASKS)  # known only after the impression
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_the_history_drops_the_padding_and_keeps_the_order():
    text = (
        "user_id,item_id,click,follow,like,share,video_category,watching_times,gender,age," + ",".join(f"hist_{i}" for i in range(1, 11)) + "\n"
        "7,12,1,0,1,0,\\N,2,1,\\N,30,10,30,0,0,0,0,0,0,0\n"
        "7,13,0,1,0,0,1,\\N,1,3,30,10,30,0,0,0,0,0,0,0\n"
    ).encode()
    assert expected_rows(text) == [
        {"user_id": 7, "item_id": 12, "video_category": None, "gender": 1, "age": None, "hist": [30, 10, 30],
         "click": 1, "follow": 0, "like": 1, "share": 0, "watching_times": 2},
        {"user_id": 7, "item_id": 13, "video_category": 1, "gender": 1, "age": 3, "hist": [30, 10, 30],
         "click": 0, "follow": 1, "like": 0, "share": 0, "watching_times": None},
    ]  # fmt: skip


def test_the_file_is_found_in_the_zip_or_the_data_folder_and_the_files_sit_side_by_side(tmp_path):
    texts = {file: csv_text(CONFIG, file) for file in ("QK-video.csv", "ctr_data_1M.csv")}
    write_download(tmp_path, texts, packed=True)  # DIR/Tenrec/Tenrec.zip > Tenrec/<file>
    report = run_recipe("Tenrec", tmp_path, progress=False, chunk_bytes=4096)  # many pieces
    assert read_rows(tmp_path / "Tenrec" / "QK-video.parquet") == expected_rows(texts["QK-video.csv"])
    assert report.outputs["QK-video"].rows == len(expected_rows(texts["QK-video.csv"]))
    run_recipe("Tenrec", tmp_path, progress=False, file="ctr_data_1M.csv")
    assert read_rows(tmp_path / "Tenrec" / "ctr_data_1M.parquet") == expected_rows(texts["ctr_data_1M.csv"])
    assert yaml.safe_load((tmp_path / "Tenrec" / "dataset.yaml").read_text())["source"] == "ctr_data_1M.parquet"  # the last converted
    assert (tmp_path / "Tenrec" / "QK-video.yaml").exists() and (tmp_path / "Tenrec" / "QK-video.parquet").exists()
    loose = tmp_path / "loose"
    write_download(loose, {"QB-video.csv": csv_text(CONFIG, "QB-video.csv")}, where=".")
    run_recipe("Tenrec", loose, progress=False, file="QB-video.csv")
    assert read_rows(loose / "Tenrec" / "QB-video.parquet") == expected_rows(csv_text(CONFIG, "QB-video.csv"))


def test_the_spec_splits_the_rows_80_10_10_and_a_model_trains_on_the_four_tasks(tmp_path, capsys):
    write_download(tmp_path, {"QK-video.csv": csv_text(TenrecConfig(users=200, seed=1))})
    assert preprocess(tmp_path) == 0
    dataset = load_dataset("Tenrec", tmp_path, progress=False)
    sizes = [len(dataset.train), len(dataset.valid), len(dataset.test)]
    assert 0.75 < sizes[0] / sum(sizes) < 0.85 and 0.06 < sizes[2] / sum(sizes) < 0.14
    assert list(dataset.schema.task_names) == [*TASKS, "watching_times"] and dataset.default_tasks == tuple(TASKS)
    capsys.readouterr()
    assert main(["train", "--dataset", "Tenrec", "--data-dir", str(tmp_path), "--model", "mmoe", "--max-steps", "2",
                 "--embed-dim", "4", "--batch-size", "64", "--no-save", "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert all(task in out for task in TASKS)


def _edit(text: bytes, line: int, column: str, value: str) -> bytes:
    lines = text.decode().split("\n")
    header = lines[0].split(",")
    values = lines[line - 1].split(",")
    values[header.index(column)] = value
    lines[line - 1] = ",".join(values)
    return "\n".join(lines).encode()


BAD = {
    # case: (file, edit, message, line, column)
    "a renamed column": ("QK-video.csv", lambda t: t.replace(b"watching_times", b"watch_times", 1), "expected the column 'watching_times' here, found 'watch_times'", 1, "watching_times"),
    "a header missing hist_10": ("ctr_data_1M.csv", lambda t: t.replace(b",hist_10\n", b"\n", 1), "expected the column 'hist_10' here, found the end of the line", 1, "hist_10"),
    "no header": ("QK-video.csv", lambda t: t.split(b"\n", 1)[1], "expected the column 'user_id' here, found '1'", 1, "user_id"),
    "a label 2": ("QK-video.csv", lambda t: _edit(t, 9, "like", "2"), "expected 0 or 1, found 2", 9, "like"),
    "a missing label": ("QK-video.csv", lambda t: _edit(t, 4, "share", "\\N"), "expected an integer, found '\\\\N'", 4, "share"),
    "a text age": ("QK-video.csv", lambda t: _edit(t, 6, "age", "old"), "expected an integer or \\N, found 'old'", 6, "age"),
    "a missing user id": ("QK-video.csv", lambda t: _edit(t, 3, "user_id", ""), "missing value; expected an integer", 3, "user_id"),
    "a negative watching count": ("QK-video.csv", lambda t: _edit(t, 5, "watching_times", "-1"), "expected a count >= 0, found -1", 5, "watching_times"),
    "a history item that is no integer": ("ctr_data_1M.csv", lambda t: _edit(t, 7, "hist_3", "1.5"), "expected an integer or \\N, found '1.5'", 7, "hist_3"),
    "a value too many": ("QB-video.csv", lambda t: _edit(t, 8, "age", "3,4"), "expected 10 values, found 11", 8, None),
    "no rows": ("QK-video.csv", lambda t: t.split(b"\n", 1)[0] + b"\n", "the file has a header but no rows", None, None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_stops_with_one_line_naming_file_line_and_column_and_writes_nothing(tmp_path, case, capsys):
    file, edit, message, line, column = BAD[case]
    write_download(tmp_path, {file: edit(csv_text(CONFIG, file))})
    assert preprocess(tmp_path, "--file", file) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and f"Tenrec/{file}" in err and message in err, err
    if line is not None:
        assert f", line {line}" in err, err
    if column is not None:
        assert f", column {column}:" in err, err
    assert sorted(p.name for p in (tmp_path / "Tenrec").iterdir()) == [file]  # nothing written
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_missing_file_names_the_places_looked_and_the_download_page(tmp_path):
    with pytest.raises(UserError) as error:
        run_recipe("Tenrec", tmp_path, progress=False, file="ctr_data_1M.csv")
    text = str(error.value)
    assert text.startswith(f"ctr_data_1M.csv not found (looked for {tmp_path}/Tenrec/ctr_data_1M.csv, {tmp_path}/ctr_data_1M.csv, ")
    assert f"{tmp_path}/Tenrec/Tenrec.zip" in text and "tenrec_dataset.html" in text and not isinstance(error.value, DataError)
    assert not (tmp_path / "Tenrec").exists()


def test_the_file_option_is_checked_and_belongs_to_tenrec(tmp_path, capsys):
    assert preprocess(tmp_path, "--file", "QK-article.csv") == 2
    assert "file (--file) must be one of QK-video.csv, QB-video.csv, ctr_data_1M.csv, got 'QK-article.csv'" in capsys.readouterr().err
    assert main(["preprocess", "--dataset", "CensusIncome", "--data-dir", str(tmp_path), "--file", "QK-video.csv"]) == 2
    assert "--file is an option of Tenrec, not of CensusIncome" in capsys.readouterr().err
