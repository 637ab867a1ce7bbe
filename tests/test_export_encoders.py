"""The encoders file ``mtrec export`` writes beside the model (docs/serving-encoders.md): a
reference encoder written here from the documented format alone (JSON, NumPy and onnxruntime;
no mtreclib) scores new raw rows through the exported ONNX graph exactly as ``mtrec predict``
does, for every kind of encoder, from Parquet and CSV; the file is written with the model or
not at all, and its errors are one line."""

from __future__ import annotations

import csv
import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import onnxruntime
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_predict import one_line_error

from mtreclib.cli import main
from mtreclib.core.errors import UserError
from mtreclib.data.encoding import CategoricalEncoder, Place
from mtreclib.data.spec import CategoricalSpec
from mtreclib.serving import export as export_module
from mtreclib.serving.inference import Inference

# ---------------------------------------------------------------------------------------------
# The reference encoder: the documented rules, from the file alone.

MASK64 = (1 << 64) - 1
DIGITS = re.compile(r"-?[0-9]+")


def splitmix64(value: int) -> int:
    z = (value + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def plain(value):
    """A categorical value as the format reads it: an integer (booleans, integral floats), text, or None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        assert value.is_integer(), value
        return int(value)
    return value


def category_id(field: dict, value, lookups: dict) -> int:
    value = plain(value)
    encoding = field["encoding"]
    if encoding == "identity":
        value = int(value) if isinstance(value, str) and DIGITS.fullmatch(value) else value  # CSV: the integer's text
        assert isinstance(value, int) and value >= 0, value  # missing or negative: refused
        return min(value, field["unknown_id"])
    if value is None:
        return field["missing_id"]
    if encoding == "hash":
        code = splitmix64(value & MASK64) if isinstance(value, int) else zlib.crc32(value.encode("utf-8"))
        return code % field["buckets"] + 1
    if field["value_type"] == "integer" and isinstance(value, str):
        if not DIGITS.fullmatch(value):
            return field["unknown_id"]
        value = int(value)
    elif field["value_type"] == "text":
        value = str(value)
    if field["name"] not in lookups:
        lookups[field["name"]] = {v: i + 1 for i, v in enumerate(field["vocabulary"])}
    return lookups[field["name"]].get(value, field["unknown_id"])


def numerical_value(feature: dict, value) -> float:
    value = float(value) if value is not None else math.nan  # text: the number it spells
    if math.isnan(value):
        assert feature["fill"] is not None, feature["name"]  # no fill: a missing value is refused
        value = feature["fill"]
    params, transform = feature["params"], feature["transform"]
    if transform == "log1p":
        return math.log1p(value)
    if transform == "standardize":
        return (value - params["mean"]) / params["std"]
    if transform == "minmax":
        span = params["max"] - params["min"]
        return (value - params["min"]) / span if span > 0 else 0.0
    return value


def as_list(field: dict, value) -> list:
    if value is None:
        return []
    return value.split(field["separator"]) if isinstance(value, str) else list(value)


def reference_inputs(document: dict, rows: list[dict]) -> dict[str, np.ndarray]:
    """The exported graph's inputs of raw ``rows`` (column -> value), by the file's rules alone."""
    lookups: dict = {}
    tensors = {
        "categorical": np.array([[category_id(f, row[f["column"]], lookups) for f in document["categorical"]] for row in rows], np.int64),
        "numerical": np.array([[numerical_value(n, row[n["column"]]) for n in document["numerical"]] for row in rows], np.float64),
    }
    tensors["categorical"] = tensors["categorical"].reshape(len(rows), len(document["categorical"]))
    tensors["numerical"] = tensors["numerical"].reshape(len(rows), len(document["numerical"])).astype(np.float32)
    for bag in document["multi_valued"]:
        values, weights, offsets = [], [], [0]
        for row in rows:
            kept = as_list(bag, row[bag["column"]])[: bag["max_len"]]
            values += [category_id(bag, v, lookups) for v in kept]
            if bag["weights"]:
                row_weights = as_list(bag, row[bag["weights"]])[: bag["max_len"]]
                assert len(row_weights) == len(kept)
                weights += [float(w) for w in row_weights]
            offsets.append(len(values))
        tensors[f"{bag['name']}_values"] = np.array(values, np.int64)
        tensors[f"{bag['name']}_offsets"] = np.array(offsets, np.int64)
        tensors[f"{bag['name']}_weights"] = np.array(weights, np.float32)
    inputs = {}
    for spec in document["inputs"]:
        array = tensors[spec["name"]]
        assert array.dtype == np.dtype(spec["dtype"]) and array.ndim == len(spec["shape"]), spec
        inputs[spec["name"]] = array
    return inputs


def reference_probabilities(encoders_file: Path, rows: list[dict]) -> np.ndarray:
    document = json.loads(encoders_file.read_text(encoding="utf-8"))
    assert (document["format"], document["version"]) == ("mtreclib-encoders", 1)
    model = encoders_file.parent / document["model"]["file"]
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run([document["output"]["name"]], reference_inputs(document, rows))
    return probabilities


# ---------------------------------------------------------------------------------------------
# Data: the documented myshop, and a dataset with every kind of encoder in Parquet and CSV.

EVERY_KIND_SPEC = """\
format: {format}
train: train.{suffix}
test: test.{suffix}
categorical:
  - user_id                                   # a vocabulary of text
  - item_id                                   # a vocabulary of integers (Parquet)
  - {{name: device, hash_buckets: 7}}
  - {{name: ad_id, hash_buckets: 11}}          # integers hashed (Parquet), text hashed (CSV)
  - {{name: slot, vocabulary: identity}}
multi_valued:
  - {{name: tags, separator: ";", max_len: 4, weights: tag_weights}}
  - {{name: seen, separator: ";", hash_buckets: 13, pooling: sum}}
numerical:
  - {{name: price, transform: log1p, fill: 0}}
  - {{name: age, transform: standardize, fill: 30}}
  - {{name: score, transform: minmax, fill: 0.5}}
  - {{name: raw}}
labels: [click, buy]
implies: {{buy: click}}
"""


def every_kind_rows(n: int, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    click = rng.random(n) < 0.5
    lengths = rng.integers(0, 6, n)
    return {
        "user_id": [f"u{x}" for x in rng.integers(0, 20, n)],
        "item_id": [int(x) for x in rng.integers(100, 140, n)],
        "device": [None if rng.random() < 0.1 else f"d{x}" for x in rng.integers(0, 9, n)],
        "ad_id": [int(x) for x in rng.integers(-5, 50, n)],
        "slot": [int(x) for x in rng.integers(0, 6, n)],
        "tags": [[f"t{x}" for x in rng.integers(0, 10, k)] for k in lengths],
        "tag_weights": [[round(float(w), 3) for w in rng.random(k) + 0.5] for k in lengths],
        "seen": [[int(x) for x in rng.integers(0, 30, rng.integers(0, 4))] for _ in range(n)],
        "price": [None if rng.random() < 0.1 else round(float(p), 4) for p in rng.gamma(2.0, 10.0, n)],
        "age": [None if rng.random() < 0.1 else int(a) for a in rng.integers(18, 70, n)],
        "score": [None if rng.random() < 0.1 else round(float(s), 4) for s in rng.random(n) * 7 - 2],
        "raw": [round(float(r), 4) for r in rng.normal(size=n)],
        "click": click.astype(int).tolist(),
        "buy": (click & (rng.random(n) < 0.4)).astype(int).tolist(),
    }


def new_every_kind_rows() -> dict[str, list]:
    """Rows to score: seen and unseen values, missing ones, bags of several values, past max_len, and empty."""
    return {
        "user_id": ["u1", "u999", "u3", None, "u5", "u2"],
        "item_id": [101, 999, 120, 105, None, 139],
        "device": ["d1", "unseen device", None, "d8", "d0", "d3"],
        "ad_id": [3, -4, 10_000_000_000, 0, 49, 7],
        "slot": [0, 5, 17, 2, 3, 1],
        "tags": [["t1", "t2", "t3"], [], ["t4", "t99", "t4", "t0", "t7", "t8"], None, ["t9"], ["t5", "t6"]],
        "tag_weights": [[0.5, 1.25, 2.0], [], [1.0, 0.75, 1.5, 0.6, 9.0, 9.0], None, [3.0], [0.8, 1.1]],
        "seen": [[1, 2, 3], [], [29, 4000], None, [7], [0]],
        "price": [12.5, None, 0.0, 300.25, 3.0, None],
        "age": [25, None, 90, 40, None, 18],
        "score": [0.1, None, 12.0, -5.0, 2.5, None],
        "raw": [0.0, -1.5, 2.25, 0.3, 1e-3, -0.7],
    }


def to_csv_text(rows: dict[str, list]) -> dict[str, list]:
    """The rows as CSV cells: lists joined by the separator, missing values (and empty lists) empty."""

    def cell(value):
        if value is None:
            return ""
        return ";".join(str(v) for v in value) if isinstance(value, list) else str(value)

    return {name: [cell(v) for v in values] for name, values in rows.items()}


def write_rows(path: Path, rows: dict[str, list]) -> None:
    if path.suffix == ".parquet":
        pq.write_table(pa.table(rows), path)
        return
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(rows))
        writer.writerows(zip(*to_csv_text(rows).values()))


def read_raw_rows(path: Path) -> list[dict]:
    """What a server receives: Parquet rows as they are; CSV rows as text, an empty cell missing."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    with path.open(newline="") as handle:
        return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(handle)]


def train(root: Path, dataset: str) -> Path:
    status = main(
        ["train", "--model", "mmoe", "--dataset", dataset, "--data-dir", str(root / "data"), "--save-dir", str(root / "chkpt"),
         "--epochs", "1", "--embed-dim", "4", "--expert-num", "2", "--bottom-dims", "16", "--tower-dims", "8", "--batch-size", "64",
         "--no-progress"]
    )  # fmt: skip
    assert status == 0
    return root / "chkpt" / f"{dataset}_mmoe" / "run-1"


@pytest.fixture(scope="module", params=["parquet", "csv"])
def every_kind_run(request, tmp_path_factory) -> Path:
    fmt = request.param
    suffix = "parquet" if fmt == "parquet" else "csv"
    root = tmp_path_factory.mktemp(f"every_kind_{fmt}")
    folder = root / "data" / "kinds"
    folder.mkdir(parents=True)
    write_rows(folder / f"train.{suffix}", every_kind_rows(400, 1))
    write_rows(folder / f"test.{suffix}", every_kind_rows(100, 2))
    (folder / "dataset.yaml").write_text(EVERY_KIND_SPEC.format(format=fmt, suffix=suffix))
    return train(root, "kinds")


def predicted(run: Path, rows_file: Path, tmp_path: Path) -> np.ndarray:
    scores = tmp_path / "scores.parquet"
    assert main(["predict", str(run), "--input", str(rows_file), "--output", str(scores), "--no-progress"]) == 0
    table = pq.read_table(scores)
    return np.stack([table.column(name).to_numpy() for name in table.column_names], axis=1)


def exported(run: Path, tmp_path: Path, capsys) -> Path:
    model = tmp_path / "served" / "model.onnx"
    assert main(["export", str(run), "--output", str(model)]) == 0
    assert f"its encoders (raw rows -> these inputs) in {model.with_name('model.encoders.json')}" in capsys.readouterr().out
    return model.with_name("model.encoders.json")


# ---------------------------------------------------------------------------------------------


def test_the_reference_encoder_scores_new_shop_rows_as_predict_does(shop_run, tmp_path, capsys):
    encoders = exported(shop_run.run, tmp_path, capsys)
    rows = {
        "user_id": ["u1", "u999", "u7", None, "u2"],  # unseen, missing
        "item_id": [101, 999, 150, 100, 159],
        "shop_id": ["s1", None, "s9", "s3", "s0"],
        "city": ["Paris", "Berlin", "Nice", "Lyon", None],
        "tags": [["t1", "t2", "t99"], [], [f"t{k % 12}" for k in range(30)], None, ["t5"]],  # several, empty, past max_len, missing
        "price": [12.5, None, 0.0, 300.25, None],
        "age": [25, None, 90, None, 18],
    }
    rows_file = tmp_path / "new.parquet"
    write_rows(rows_file, rows)
    expected = predicted(shop_run.run, rows_file, tmp_path)
    got = reference_probabilities(encoders, read_raw_rows(rows_file))
    assert got.shape == expected.shape == (5, 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    document = json.loads(encoders.read_text())
    assert document["output"]["tasks"] == ["click", "cart", "buy"] and document["source_format"] == "parquet"
    assert [f["name"] for f in document["categorical"]] == ["user_id", "item_id", "shop_id", "city"]
    assert document["categorical"][1]["value_type"] == "integer" and document["categorical"][0]["value_type"] == "text"


def test_the_reference_encoder_covers_every_kind_of_encoder(every_kind_run, tmp_path, capsys):
    encoders = exported(every_kind_run, tmp_path, capsys)
    document = json.loads(encoders.read_text())
    kinds = {f["name"]: f["encoding"] for f in document["categorical"] + document["multi_valued"]}
    assert kinds == {"user_id": "vocabulary", "item_id": "vocabulary", "device": "hash", "ad_id": "hash", "slot": "identity",
                     "tags": "vocabulary", "seen": "hash"}  # fmt: skip
    assert [n["transform"] for n in document["numerical"]] == ["log1p", "standardize", "minmax", None]
    names = ["categorical", "numerical", "tags_values", "tags_offsets", "tags_weights", "seen_values", "seen_offsets"]
    assert [i["name"] for i in document["inputs"]] == names
    fmt = document["source_format"]
    rows_file = tmp_path / ("new.parquet" if fmt == "parquet" else "new.csv")
    write_rows(rows_file, new_every_kind_rows())
    raw = read_raw_rows(rows_file)
    expected = predicted(every_kind_run, rows_file, tmp_path)
    got = reference_probabilities(encoders, raw)
    assert got.shape == expected.shape == (6, 2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    inputs = reference_inputs(document, raw)
    slot = document["categorical"][4]
    assert inputs["categorical"][2, 4] == slot["unknown_id"] == slot["max_id"] + 1  # 17 is past every training id
    assert inputs["tags_offsets"].tolist()[:3] == [0, 3, 3]  # an empty bag: two equal offsets


def test_the_hash_rules_are_the_documented_functions():
    # SplitMix64 seeded with 0 gives 0xE220A8397B1DCDAF first (Vigna's reference generator).
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert zlib.crc32(b"123456789") == 0xCBF43926  # CRC-32/ISO-HDLC's check value


def test_nothing_is_written_when_the_export_fails_and_old_files_stay(shop_run, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "model.onnx").write_text("old model")
    (folder / "model.encoders.json").write_text("old encoders")

    def failing(*args, **kwargs):
        raise RuntimeError("the exporter broke")

    monkeypatch.setattr(export_module, "_run_export", failing)
    assert main(["export", str(shop_run.run), "--output", str(folder / "model.onnx")]) == 2
    assert "cannot be exported to onnx: RuntimeError: the exporter broke" in one_line_error(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["model.encoders.json", "model.onnx"]  # no temporaries left
    assert (folder / "model.onnx").read_text() == "old model" and (folder / "model.encoders.json").read_text() == "old encoders"


def test_the_encoders_may_go_elsewhere_and_name_their_model(shop_run, tmp_path, capsys):
    model, encoders = tmp_path / "m.pt", tmp_path / "other" / "enc.json"
    assert main(["export", str(shop_run.run), "--output", str(model), "--encoders", str(encoders)]) == 0
    document = json.loads(encoders.read_text())
    assert document["model"] == {"file": "m.pt", "format": "torchscript", "name": "mmoe", "dataset": "myshop", "epoch": document["model"]["epoch"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "other"]


@pytest.mark.parametrize(
    "encoders, message",
    [
        ("{out}", "is the model's own file"),
        ("{tmp}", "is a folder; expected a file name"),
        ("{tmp}/model.onnx/enc.json", "is a file, not a folder"),
    ],
)
def test_a_bad_encoders_path_is_one_line_before_any_work(shop_run, tmp_path, encoders, message, capsys):
    out = tmp_path / "model.onnx"
    if "model.onnx/" in encoders:
        out.write_text("a file in the way")
    path = encoders.format(out=out, tmp=tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["export", str(shop_run.run), "--output", str(out), "--encoders", path]) == 2
    err = one_line_error(capsys)
    assert f"--encoders {path}" in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_model_without_encoders_of_raw_rows_is_exported_alone_or_refused_when_asked(shop_run, tmp_path, monkeypatch, capsys):
    def no_raw_rows(self):
        raise UserError(f"{self.path}: the checkpoint's encoders do not describe its model's features; it can score encoded arrays only")

    monkeypatch.setattr(Inference, "check_raw_rows", no_raw_rows)
    assert main(["export", str(shop_run.run), "--output", str(tmp_path / "m.onnx")]) == 0
    assert "no encoders file" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert main(["export", str(shop_run.run), "--output", str(tmp_path / "n.onnx"), "--encoders", str(tmp_path / "n.json")]) == 2
    assert "encoded arrays only" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_an_integer_vocabulary_reads_each_text_value_on_its_own():
    """The documented rule a server can follow row by row: digits spell the integer, other text is unseen,
    whatever else the chunk holds (it used to depend on whether every value of the chunk was digits)."""
    encoder = CategoricalEncoder(CategoricalSpec.build({"name": "item"}), values=pa.array([7, 3, 12]))  # ids 1, 2, 3
    place = Place("rows", 1, lines=False)
    assert encoder.encode(pa.array(["007", "12", "-3", "3"]), place).tolist() == [1, 3, 0, 2]
    assert encoder.encode(pa.array(["007", "abc", None, "12", "3 ", "3"]), place).tolist() == [1, 0, 0, 3, 0, 2]
