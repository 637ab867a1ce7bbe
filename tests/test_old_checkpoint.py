"""A run folder written before the checkpoint's metadata became a typed record (format version 1)
still evaluates, predicts, exports and resumes; a file of an unknown version is refused in one line.

``tests/data/checkpoint-v1`` was written by mtreclib at commit 86464ba (see tests/data/README.md):
``data/myshop`` (the documented Parquet dataset with string ids, missing values and a
multi-valued field) and ``chkpt/myshop_mmoe/run-1``, MMoE trained with ``--mto fixed
--task-weights 1,0.5`` on two of its tasks for 2 epochs, from that folder (relative paths).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import mtreclib
from mtreclib.cli import main
from mtreclib.data.datasets import load_dataset
from mtreclib.runs import checkpoint
from mtreclib.runs.checkpoint import ModelCheckpoint
from mtreclib.runs.record import metrics_map
from mtreclib.serving.evaluation import table_logits
from mtreclib.serving.inference import load_checkpoint

FIXTURE = Path(__file__).resolve().parent / "data" / "checkpoint-v1"
RUN = Path("chkpt") / "myshop_mmoe" / "run-1"


@pytest.fixture()
def old_run(tmp_path, monkeypatch) -> Path:
    """A copy of the old run folder and its data (evaluating builds a cache beside the data), as the current folder."""
    shutil.copytree(FIXTURE, tmp_path / "old")
    monkeypatch.chdir(tmp_path / "old")
    return tmp_path / "old"


def test_the_fixture_is_the_old_format():
    payload = torch.load(FIXTURE / RUN / "best.pt", map_location="cpu", weights_only=True)
    assert payload["version"] == 1 and "model_config" in payload and "run" not in payload
    assert sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file()) < 1_000_000


def test_an_old_run_evaluates_to_its_own_test_metrics(old_run, tmp_path):
    trained = json.loads((RUN / "results.json").read_text())
    assert main(["evaluate", str(RUN), "--results", str(tmp_path / "eval.json"), "--no-progress"]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())["tasks"]
    # The run's own figures; GAUC (of the spec's group) is new since, so the old results lack it.
    assert {task: {"auc": m["auc"], "logloss": m["logloss"]} for task, m in evaluated.items()} == trained["tasks"]
    assert all(m["gauc"] is not None and m["gauc_groups"] > 0 for m in evaluated.values())
    without_gauc = {task: replace(m, gauc=None, gauc_groups=None, gauc_skipped=None) for task, m in mtreclib.load(RUN).evaluate().tasks.items()}
    assert without_gauc == metrics_map(trained["tasks"])
    saved = ModelCheckpoint.read(RUN)
    assert saved.run.config.mto_config.task_weights == (1.0, 0.5) and saved.run.dataset == "myshop"


def test_an_old_run_predicts_and_exports(old_run, tmp_path):
    source = Path("data") / "myshop" / "test.parquet"
    assert main(["predict", str(RUN), "--input", str(source), "--output", str(tmp_path / "s.parquet"), "--no-progress"]) == 0
    scores = pq.read_table(tmp_path / "s.parquet")
    inference = load_checkpoint(RUN)
    test = load_dataset("myshop", "data", progress=False).select_tasks(inference.tasks).test
    expected = torch.sigmoid(table_logits(inference, test)).numpy()
    np.testing.assert_array_equal(np.stack([scores[task].to_numpy() for task in inference.tasks], axis=1), expected)
    assert main(["export", str(RUN), "--output", str(tmp_path / "model.pt")]) == 0
    assert (tmp_path / "model.pt").stat().st_size > 0


def test_an_old_run_resumes_and_goes_on_in_the_new_format(old_run, capsys):
    status = main(["train", "--config", str(RUN / "config.yaml"), "--resume", str(RUN), "--epochs", "3", "--no-progress"])
    assert status == 0, capsys.readouterr().err
    results = json.loads((RUN / "results.json").read_text())
    assert results["epochs_run"] == 3 and [r["epoch"] for r in results["history"]] == [1, 2, 3]
    last = checkpoint.load(RUN, "resume")
    assert last["loop"]["epochs_run"] == 3 and last["version"] == checkpoint.VERSION
    # best.pt is rewritten only by a better epoch; old or new, it is the run's best.
    assert ModelCheckpoint.read(RUN).epoch == results["best_epoch"]


def test_an_old_run_refuses_other_settings_on_resume(old_run, capsys):
    assert main(["train", "--config", str(RUN / "config.yaml"), "--resume", str(RUN), "--lr", "0.01", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.lr was 0.001, now 0.01" in err


def test_a_checkpoint_of_an_unknown_format_version_is_one_line(old_run, tmp_path, capsys):
    payload = torch.load(RUN / "best.pt", map_location="cpu", weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "best.pt")
    assert main(["evaluate", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint format version 99; this mtreclib reads versions 1 and 2" in err
