"""A trained model's life after training: mtrec evaluate, mtrec predict and the Python API, on a
checkpoint that ``mtrec train`` wrote for a Parquet dataset with string ids, missing values and a
multi-valued field (the ``shop_run`` fixture)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
from test_spec import shop_rows

import mtreclib
from mtreclib.cli import main
from mtreclib.core.errors import UserError
from mtreclib.data.datasets import load_dataset
from mtreclib.runs import checkpoint
from mtreclib.runs.record import metrics_map
from mtreclib.serving import streaming
from mtreclib.serving.inference import load_checkpoint
from mtreclib.training.trainer import Trainer

README = Path(__file__).resolve().parents[1] / "README.md"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mtrec: error: ") and "Traceback" not in err, err
    return err


def model_scores(shop_run, split: str = "test") -> np.ndarray:
    """The probabilities the training code path gives the rows of the cached split (the reference)."""
    inference = load_checkpoint(shop_run.run)
    table = getattr(load_dataset("myshop", shop_run.root / "data", progress=False).select_tasks(inference.tasks), split)
    trainer = Trainer(inference.model, inference.config.train, inference.device, progress=False)
    return torch.sigmoid(trainer.predict(table)).numpy()


def test_evaluate_reproduces_the_training_runs_test_metrics_in_its_results_layout(shop_run, tmp_path, capsys):
    results = tmp_path / "eval.json"
    assert main(["evaluate", str(shop_run.run), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "test results: mmoe on myshop" in out and "click" in out
    trained, evaluated = json.loads(shop_run.results.read_text()), json.loads(results.read_text())
    assert evaluated["tasks"] == trained["tasks"]  # the same batches: the same floats
    assert evaluated.keys() == trained.keys()  # the layout of mtrec train --results
    assert evaluated["split"] == "test" and evaluated["rows"] == {"test": 120} and evaluated["checkpoint"].endswith("best.pt")
    assert evaluated["config"] == trained["config"] and evaluated["best_epoch"] == trained["best_epoch"]
    assert mtreclib.load(shop_run.run).evaluate().tasks == metrics_map(trained["tasks"])


def test_evaluate_on_the_validation_split_gives_the_figures_the_run_selected_its_weights_by(shop_run, tmp_path):
    results = tmp_path / "valid.json"
    assert main(["evaluate", str(shop_run.run / "best.pt"), "--split", "valid", "--results", str(results)]) == 0
    record = json.loads(results.read_text())
    assert record["tasks"] == checkpoint.load(shop_run.run, "model")["valid"]
    assert record["rows"] == {"valid": 50}  # the tail 10% of 500 training rows, as training carved it


def test_evaluate_refuses_a_dataset_whose_vocabularies_were_fitted_on_other_rows(shop_run, tmp_path, capsys):
    other = tmp_path / "othershop"
    other.mkdir()
    pq.write_table(pa.table(shop_rows(200, seed=7)), other / "train.parquet")
    pq.write_table(pa.table(shop_rows(50, seed=8)), other / "test.parquet")
    spec = (shop_run.root / "data" / "myshop" / "dataset.yaml").read_text()
    (other / "dataset.yaml").write_text(spec.replace("train/*.parquet", "train.parquet"))
    assert main(["evaluate", str(shop_run.run), "--dataset", "othershop", "--data-dir", str(tmp_path)]) == 2
    err = one_line_error(capsys)
    assert "othershop: its encoding differs from the checkpoint's" in err and "categorical feature user_id" in err


def test_predict_scores_every_row_in_input_order_as_evaluation_does_with_ids_passed_through(shop_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(streaming, "PARQUET_ROWS", 32)  # four chunks of the 120 rows
    source = shop_run.root / "data" / "myshop" / "test.parquet"  # labels included: ignored
    output = tmp_path / "out" / "scores.parquet"
    args = ["predict", str(shop_run.run), "--input", str(source), "--output", str(output), "--id-column", "session_id", "--id-column", "user_id"]
    assert main([*args, "--no-progress"]) == 0
    assert "120 rows scored by mmoe" in capsys.readouterr().err
    scores, rows = pq.read_table(output), pq.read_table(source)
    assert scores.column_names == ["session_id", "user_id", "click", "cart", "buy"]
    assert scores["session_id"].equals(rows["session_id"]) and scores["user_id"].equals(rows["user_id"])
    got = np.stack([scores[task].to_numpy() for task in ("click", "cart", "buy")], axis=1)
    np.testing.assert_allclose(got, model_scores(shop_run), rtol=0, atol=1e-6)
    assert sorted(p.name for p in output.parent.iterdir()) == ["scores.parquet"]  # no temporary file left


def test_predict_reads_gzipped_csv_without_labels_and_writes_csv_with_the_same_scores(shop_run, tmp_path):
    rows = pq.read_table(shop_run.root / "data" / "myshop" / "test.parquet").drop_columns(["click", "cart", "buy"])
    tags = pa.array(["|".join(t) for t in rows["tags"].to_pylist()])  # the spec's separator for CSV text
    rows = rows.set_column(rows.column_names.index("tags"), "tags", tags)
    source = tmp_path / "rows.csv.gz"
    with gzip.open(source, "wb") as handle:
        pacsv.write_csv(rows, handle)
    output = tmp_path / "scores.csv"
    model = mtreclib.load(shop_run.run)
    summary = model.predict_file(source, output, id_columns=["session_id"], chunk_bytes=1500)  # several pieces
    assert summary.rows == 120
    scores = pacsv.read_csv(output)
    assert scores.column_names == ["session_id", "click", "cart", "buy"] and scores["session_id"].to_pylist() == rows["session_id"].to_pylist()
    got = np.stack([scores[task].to_numpy() for task in model.tasks], axis=1)
    np.testing.assert_allclose(got, model_scores(shop_run), rtol=0, atol=1e-6)


def test_unknown_ids_score_as_each_fields_out_of_vocabulary_slot(shop_run):
    model = mtreclib.load(shop_run.run)
    rows = {
        "user_id": ["nobody", "u3"], "item_id": [99_999, 101], "shop_id": ["s2", "nowhere"], "city": ["Atlantis", "Lyon"],
        "tags": [["t1", "never"], []], "price": [1.0, None], "age": [30, 40],
    }  # fmt: skip
    encoded = model.encode(rows)
    assert encoded.categorical[0, 0] == 0 and encoded.categorical[0, 1] == 0 and encoded.categorical[0, 3] == 0
    assert encoded.categorical[1, 2] == 0 and encoded.categorical[1, 0] > 0
    assert encoded.bags[0].values[1] == 0 and encoded.bags[0].lengths().tolist() == [2, 0] and encoded.labels is None
    bag = (encoded.bags[0].values, encoded.bags[0].offsets)
    expected = model.predict_encoded(encoded.categorical, encoded.numerical, [bag])
    np.testing.assert_array_equal(model.predict(rows), expected)
    assert expected.shape == (2, 3) and ((expected > 0) & (expected < 1)).all()


def test_the_python_api_takes_a_dataframe_and_gives_one_back_with_its_index(shop_run):
    model = mtreclib.load(shop_run.run)
    frame = pq.read_table(shop_run.root / "data" / "myshop" / "test.parquet").to_pandas()
    frame.index = frame.index + 1000
    scores = model.predict(frame)
    assert isinstance(scores, pandas.DataFrame) and list(scores.columns) == ["click", "cart", "buy"]
    assert scores.index.equals(frame.index)
    np.testing.assert_allclose(scores.to_numpy(), model_scores(shop_run), rtol=0, atol=1e-6)
    assert model.features == ("user_id", "item_id", "shop_id", "city", "tags", "price", "age")
    assert "mmoe trained on myshop" in repr(model)
    with pytest.raises(TypeError, match="expected rows"):
        model.predict([1, 2, 3])


def test_a_bad_value_mid_file_names_file_row_and_column_and_leaves_the_old_output_untouched(shop_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(streaming, "PARQUET_ROWS", 32)  # the bad row is in the third chunk, after two were written
    rows = pq.read_table(shop_run.root / "data" / "myshop" / "test.parquet")
    prices = [None if p is None else str(p) for p in rows["price"].to_pylist()]
    prices[80] = "cheap"
    source = tmp_path / "bad.parquet"
    pq.write_table(rows.set_column(rows.column_names.index("price"), "price", pa.array(prices)), source)
    output = tmp_path / "scores.parquet"
    output.write_text("the previous scores")
    assert main(["predict", str(shop_run.run), "--input", str(source), "--output", str(output), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert f"{source}, row 81, column price: expected a number, found 'cheap'" in err
    assert output.read_text() == "the previous scores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "scores.parquet"]


def test_a_bad_csv_value_names_its_line(shop_run, tmp_path, capsys):
    source = tmp_path / "rows.csv"
    lines = ["user_id,item_id,shop_id,city,tags,price,age"] + [f"u{i},{100 + i},s1,Paris,t1|t2,3.5,{20 + i}" for i in range(12)]
    lines[9] = "u9,109,s1,Paris,t1,3.5,old"
    source.write_text("\n".join(lines) + "\n")
    assert main(["predict", str(shop_run.run), "--input", str(source), "--output", str(tmp_path / "s.csv"), "--no-progress"]) == 2
    assert f"{source}, line 10, column age: expected a number, found 'old'" in one_line_error(capsys)
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.drop_columns(["city"]), "no column 'city' (the model reads user_id, item_id, shop_id, city, tags, price, age)"),
        (lambda t: t, "no id column 'order_id'"),
    ],
)
def test_a_missing_column_is_refused_before_any_row_is_scored(shop_run, tmp_path, capsys, change, message):
    source = tmp_path / "rows.parquet"
    pq.write_table(change(pq.read_table(shop_run.root / "data" / "myshop" / "test.parquet")), source)
    args = ["predict", str(shop_run.run), "--input", str(source), "--output", str(tmp_path / "s.parquet"), "--id-column", "order_id"]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"mtrec: error: {source}: {message}") and "the file has: user_id" in err
    assert not (tmp_path / "s.parquet").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "{root}/data/myshop/test.parquet", "--output", "{tmp}/s.json"], "--output {tmp}/s.json: cannot tell the format from the suffix"),
        (["--input", "{tmp}/none.parquet", "--output", "{tmp}/s.csv"], "--input {tmp}/none.parquet: no such file"),
        (["--input", "{root}/data/myshop/test.parquet", "--output", "{root}/data/myshop/test.parquet"], "is the input file"),
        (["--input", "{root}/data/myshop/test.parquet", "--output", "{tmp}/s.csv", "--id-column", "buy"], "--id-column buy: the output already has"),
        (["--input", "{root}/data/myshop/test.parquet", "--output", "{tmp}/s.csv", "--batch-size", "0"], "batch_size (--batch-size) must be at least 2, got 0"),
    ],
)
def test_predict_refuses_bad_arguments_in_one_line(shop_run, tmp_path, capsys, args, message):
    args = [a.format(root=shop_run.root, tmp=tmp_path) for a in args]
    assert main(["predict", str(shop_run.run), *args]) == 2
    assert message.format(root=shop_run.root, tmp=tmp_path) in one_line_error(capsys)


def test_a_path_that_is_no_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no such checkpoint" in one_line_error(capsys)
    (tmp_path / "best.pt").write_text("not a checkpoint")
    assert main(["predict", str(tmp_path), "--input", "x.parquet", "--output", "y.parquet"]) == 2
    assert "not a readable mtreclib checkpoint" in one_line_error(capsys)


def test_an_input_without_rows_gives_the_output_columns_without_rows(shop_run, tmp_path):
    source = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(shop_run.root / "data" / "myshop" / "test.parquet").slice(0, 0), source)
    summary = mtreclib.load(shop_run.run).predict_file(source, tmp_path / "s.parquet", id_columns=["session_id"])
    scores = pq.read_table(tmp_path / "s.parquet")
    assert summary.rows == 0 and scores.num_rows == 0 and scores.column_names == ["session_id", "click", "cart", "buy"]


def readme_api_example() -> str:
    text = README.read_text()
    found = re.search(r"<!-- api-example -->\s*```python\n(.*?)```\s*<!-- /api-example -->", text, re.S)
    assert found, "README.md has no <!-- api-example --> block"
    return found.group(1)


def test_the_readmes_python_api_example_runs_verbatim(shop_run, monkeypatch, capsys):
    monkeypatch.chdir(shop_run.root)  # the example's relative paths: chkpt/..., data/myshop/...
    exec(compile(readme_api_example(), "README.md (api-example)", "exec"), {"__name__": "readme"})  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    assert "('click', 'cart', 'buy')" in out
    assert pq.read_table(shop_run.root / "scores.parquet").num_rows == 120
    assert (shop_run.root / "mmoe.onnx").stat().st_size > 0


def test_loading_rejects_what_it_cannot_use_in_one_line(shop_run, tmp_path):
    payload = checkpoint.load(shop_run.run, "model")
    payload["state_dict"] = {key: value[:1] if value.dim() else value for key, value in payload["state_dict"].items()}
    del payload["path"]
    checkpoint.save(tmp_path / "best.pt", payload)
    with pytest.raises(UserError, match="the weights do not fit model mmoe"):
        mtreclib.load(tmp_path)


def test_predict_scores_the_real_aliexpress_sample_from_its_csv_as_evaluation_does(aliexpress_dir, tmp_path, capsys):
    save_dir = tmp_path / "ck"
    assert main(["train", "--dataset", "AliExpress_NL", "--data-dir", str(aliexpress_dir), "--epochs", "1", "--embed-dim", "4",
                 "--expert-num", "2", "--bottom-dims", "16,8", "--tower-dims", "8", "--save-dir", str(save_dir), "--no-progress"]) == 0  # fmt: skip
    run = save_dir / "AliExpress_NL_mmoe" / "run-1"
    output = tmp_path / "scores.csv"
    assert main(["predict", str(run), "--input", str(aliexpress_dir / "AliExpress_NL" / "test.csv"), "--output", str(output),
                 "--id-column", "search_id", "--no-progress"]) == 0  # fmt: skip
    scores = pacsv.read_csv(output)
    inference = load_checkpoint(run)
    test = load_dataset("AliExpress_NL", aliexpress_dir, progress=False).select_tasks(inference.tasks).test
    expected = torch.sigmoid(Trainer(inference.model, inference.config.train, inference.device, progress=False).predict(test)).numpy()
    got = np.stack([scores["click"].to_numpy(), scores["conversion"].to_numpy()], axis=1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert scores.num_rows == 20 and scores["search_id"].to_pylist() == pacsv.read_csv(aliexpress_dir / "AliExpress_NL" / "test.csv")["search_id"].to_pylist()
