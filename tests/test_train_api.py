"""``mtreclib.train``: ``mtrec train`` from Python (a dataset by name, a spec, or tables in memory),
returning the run's model as ``mtreclib.load`` gives it, its record and run folder; and ``mtrec
generate --dataset myshop``, the README's example it trains on here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mtreclib
from mtreclib.cli import main
from mtreclib.core.errors import UserError
from mtreclib.data.myshop import SPEC, MyShopConfig, write_myshop
from mtreclib.data.spec import DatasetSpec

# Small and quick: what is tested is the path, not the model.
TINY = {"embed_dim": 4, "bottom_dims": (16,), "tower_dims": (8,), "batch_size": 64, "epochs": 1, "progress": False, "threads": 1}
SHOP = MyShopConfig(train_rows=600, test_rows=200, new_rows=20)


@pytest.fixture()
def shop(tmp_path, monkeypatch) -> Path:
    """A working directory holding data/myshop, as ``mtrec generate --dataset myshop`` writes it (smaller)."""
    monkeypatch.chdir(tmp_path)
    write_myshop(tmp_path / "data" / "myshop", SHOP)
    return tmp_path


def test_generate_myshop_writes_the_readmes_spec_and_the_same_files_for_the_same_seed(tmp_path, capsys):
    for folder in ("a", "b"):
        assert main(["generate", "--dataset", "myshop", "--data-dir", str(tmp_path / folder), "--train-rows", "300", "--test-rows", "90"]) == 0
    assert "train on them with: mtrec train --dataset myshop" in capsys.readouterr().out
    a, b = tmp_path / "a" / "myshop", tmp_path / "b" / "myshop"
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == ["dataset.yaml", "new_rows.parquet", "test.parquet", "train/day1.parquet", "train/day2.parquet"]
    assert all((a / name).read_bytes() == (b / name).read_bytes() for name in names)
    assert (a / "dataset.yaml").read_text() == SPEC
    train = pa.concat_tables([pq.read_table(a / "train" / day) for day in ("day1.parquet", "day2.parquet")])
    assert train.num_rows == 300 and pq.read_table(a / "test.parquet").num_rows == 90
    assert {"click", "cart", "buy"}.isdisjoint(pq.read_table(a / "new_rows.parquet").column_names)
    click, cart, buy = (np.asarray(train[name]) for name in ("click", "cart", "buy"))
    assert ((cart <= click) & (buy <= click)).all() and 0 < buy.sum() < click.sum() < len(click)  # the spec's implies
    spec = DatasetSpec.load(a / "dataset.yaml")
    assert spec.name == "myshop" and set(spec.columns_needed()) <= set(train.column_names)


def test_generate_myshop_with_another_seed_writes_other_rows_and_refuses_a_built_in_name(tmp_path, capsys):
    assert main(["generate", "--dataset", "myshop", "--data-dir", str(tmp_path), "--name", "other", "--data-seed", "1"]) == 0
    assert main(["generate", "--dataset", "myshop", "--data-dir", str(tmp_path)]) == 0
    assert pq.read_table(tmp_path / "other" / "test.parquet") != pq.read_table(tmp_path / "myshop" / "test.parquet")
    assert main(["generate", "--dataset", "myshop", "--data-dir", str(tmp_path), "--name", "synthetic"]) == 2
    assert "--name synthetic: a built-in dataset's name" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "dataset.yaml").write_text("labels: [click]\n")  # someone's own dataset
    assert main(["generate", "--dataset", "myshop", "--data-dir", str(tmp_path), "--name", "mine"]) == 2
    assert "mine/dataset.yaml: another dataset's spec is there" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["dataset.yaml"]


def test_train_by_name_returns_the_runs_model_record_and_folder_as_the_cli_writes_them(shop):
    run = mtreclib.train(dataset="myshop", model="sharedbottom", **TINY)
    assert run.run_dir == Path("chkpt/myshop_sharedbottom/run-1") and (run.run_dir / "results.json").is_file()
    assert isinstance(run.model, mtreclib.Model) and run.model.tasks == ("click", "cart", "buy")
    assert run.record.model == "sharedbottom" and run.record.rows == {"train": 540, "valid": 60, "test": 200}
    assert run.metrics is run.record.tasks and run.record.config["model_config"]["embed_dim"] == 4
    # The model is the checkpoint's: loading the folder gives the same scores, evaluating it the record's metrics.
    rows = pq.read_table("data/myshop/new_rows.parquet")
    np.testing.assert_array_equal(run.model.predict(rows), mtreclib.load(run.run_dir).predict(rows))
    evaluated = run.model.evaluate()
    assert {t: m.auc for t, m in evaluated.tasks.items()} == {t: m.auc for t, m in run.metrics.items()}


def test_train_takes_a_spec_file_or_a_datasetspec_and_writes_results_when_asked(shop):
    spec = DatasetSpec.load("data/myshop/dataset.yaml")
    run = mtreclib.train(spec, "sharedbottom", results="out.json", **TINY)
    assert run.record.dataset == "myshop" and Path("out.json").is_file()
    again = mtreclib.train("data/myshop/dataset.yaml", "sharedbottom", **TINY)
    assert again.run_dir.name == "run-2" and {t: m.auc for t, m in again.metrics.items()} == {t: m.auc for t, m in run.metrics.items()}
    # A folder's Path, and paths as settings.
    folder = mtreclib.train(Path("data/myshop"), "sharedbottom", **{**TINY, "save_dir": Path("elsewhere")})
    assert folder.run_dir == Path("elsewhere/myshop_sharedbottom/run-1") and folder.record.dataset == "myshop"
    # A spec of no file (built in Python) is loaded as it is and named by its name.
    inline = DatasetSpec.from_dict({**spec.raw, "name": "inline"}, base=Path("data/myshop"))
    run = mtreclib.train(inline, "sharedbottom", **TINY)
    assert run.record.dataset == "inline" and run.run_dir == Path("chkpt/inline_sharedbottom/run-1")


def test_a_spec_of_no_file_takes_the_cache_dir_and_gauc_group_settings(shop):
    spec = DatasetSpec.load("data/myshop/dataset.yaml")
    inline = DatasetSpec.from_dict({**spec.raw, "name": "inline"}, base=Path("data/myshop"))
    run = mtreclib.train(inline, "sharedbottom", cache_dir="caches", gauc_group="user_id", **TINY)
    assert any(Path("caches").rglob("*")), "the cache was not built under --cache-dir"
    users = len(set(pq.read_table("data/myshop/test.parquet", columns=["user_id"]).column(0).to_pylist()))
    assert all(m.gauc_groups + m.gauc_skipped == users for m in run.metrics.values())


def test_tables_in_memory_are_written_with_their_spec_and_trained_like_a_dataset(shop):
    train = pa.concat_tables([pq.read_table(f"data/myshop/train/day{d}.parquet") for d in (1, 2)])
    frames = {"train": train.to_pandas(), "test": pq.read_table("data/myshop/test.parquet")}  # pandas and PyArrow
    spec = {"name": "frames", "categorical": ["user_id", "city"], "multi_valued": ["tags"], "labels": ["click", "buy"], "train": "ignored.csv"}
    run = mtreclib.train(frames, "sharedbottom", spec=spec, **TINY)
    folder = Path("data/frames")
    assert pq.read_table(folder / "train.parquet").num_rows == 600 and not (folder / "valid.parquet").exists()
    written = DatasetSpec.load(folder / "dataset.yaml")
    assert written.label_names == ("click", "buy") and written.format == "parquet" and written.splits["train"] == (folder / "train.parquet",)
    assert run.record.dataset == "frames" and run.model.tasks == ("click", "buy") and run.model.features == ("user_id", "city", "tags")
    # A spec file's keys do as well; the folder is written again.
    spec_file = DatasetSpec.load("data/myshop/dataset.yaml")
    run = mtreclib.train({**frames, "valid": frames["test"]}, "sharedbottom", spec={**spec_file.raw, "name": "frames"}, **TINY)
    assert run.record.rows["valid"] == 200 and run.model.tasks == ("click", "cart", "buy")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mtreclib.train("myshop", epoch=1), "unknown setting 'epoch' (did you mean epochs?)"),
        (lambda: mtreclib.train("myshop", "sharedbottom", expert_num=2), "model sharedbottom has no setting 'expert_num'"),
        (lambda: mtreclib.train("myshop", save=False), "save=False: mtreclib.train returns the model of the run's checkpoint"),
        (lambda: mtreclib.train({"train": {}, "test": {}}), "dataset: tables in memory need a spec="),
        (lambda: mtreclib.train({"train": {}, "test": {}}, spec={"labels": ["click"]}), "spec: name: missing"),
        (lambda: mtreclib.train({"train": {"a": [1]}}, spec={"name": "x", "labels": ["a"]}), "dataset: no 'test' table"),
        (lambda: mtreclib.train({"tests": {"a": [1]}}, spec={"name": "x"}), "dataset: 'tests' is not a split"),
        (lambda: mtreclib.train("myshop", spec={"name": "x"}), "spec: only with tables in memory"),
        (lambda: mtreclib.train({"train": {"a": [1]}, "test": {"a": [1]}}, spec={"name": "myshop"}), "a dataset folder mtreclib.train did not write"),
    ],
)
def test_bad_arguments_are_one_line_errors_before_any_file_is_written(shop, call, message):
    before = sorted(shop.rglob("*"))
    with pytest.raises(UserError) as raised:
        call()
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert sorted(shop.rglob("*")) == before


def test_a_dataset_of_another_type_is_a_type_error(shop):
    with pytest.raises(TypeError, match="dataset: expected a name or spec path, a DatasetSpec"):
        mtreclib.train(42)
