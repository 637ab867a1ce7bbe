"""One scoring path: a trained model scores rows the same whether training, ``mtrec evaluate``,
``mtrec predict`` or the Python API asks, at the run's precision, and using it builds no trainer
or strategy (a run trained with strategy settings evaluates)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_spec import write_shop

import mtreclib
from mtreclib.cli import main
from mtreclib.data.datasets import load_dataset
from mtreclib.data.table import split_validation
from mtreclib.runs import checkpoint
from mtreclib.runs.checkpoint import ModelCheckpoint
from mtreclib.runs.record import metrics_map
from mtreclib.scoring import batch_logits, logits
from mtreclib.serving.evaluation import table_logits
from mtreclib.serving.inference import load_checkpoint

TASKS = ("click", "buy")


@pytest.fixture(scope="module", params=["fp32", "bf16"])
def fixed_run(request, tmp_path_factory) -> tuple[Path, Path, dict]:
    """MMoE trained by ``mtrec train --mto fixed --task-weights 1,0.5`` on two of the shop's tasks, at a precision."""
    root = tmp_path_factory.mktemp(f"fixed-{request.param}")
    write_shop(root / "data" / "myshop")
    results = root / "train.json"
    status = main(
        ["train", "--model", "mmoe", "--mto", "fixed", "--task-weights", "1,0.5", "--tasks", ",".join(TASKS),
         "--dataset", "myshop", "--data-dir", str(root / "data"), "--save-dir", str(root / "chkpt"), "--precision", request.param,
         "--epochs", "2", "--embed-dim", "4", "--expert-num", "2", "--bottom-dims", "32,16", "--tower-dims", "8",
         "--batch-size", "64", "--device", "cpu", "--results", str(results), "--no-progress"]
    )  # fmt: skip
    assert status == 0
    return root, root / "chkpt" / "myshop_mmoe" / "run-1", json.loads(results.read_text())


def test_a_run_trained_with_fixed_task_weights_evaluates_to_its_test_metrics(fixed_run, tmp_path, capsys):
    root, run, trained = fixed_run
    assert trained["config"]["mto_config"]["task_weights"] == [1.0, 0.5] and list(trained["tasks"]) == list(TASKS)
    evaluated = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--results", str(evaluated), "--threads", "1", "--no-progress"]) == 0
    assert "test results: mmoe on myshop" in capsys.readouterr().out
    assert json.loads(evaluated.read_text())["tasks"] == trained["tasks"]  # the run's test AUC and log-loss, to the last digit
    assert mtreclib.load(run).evaluate().tasks == metrics_map(trained["tasks"])


def test_evaluate_and_predict_give_the_same_probabilities_at_the_runs_precision(fixed_run, tmp_path):
    root, run, trained = fixed_run
    output = tmp_path / "scores.parquet"
    source = root / "data" / "myshop" / "test.parquet"
    assert main(["predict", str(run), "--input", str(source), "--output", str(output), "--no-progress"]) == 0
    scores = pq.read_table(output)
    predicted = np.stack([scores[task].to_numpy() for task in TASKS], axis=1)

    inference = load_checkpoint(run)
    assert inference.precision == trained["config"]["train"]["precision"]
    test = load_dataset("myshop", root / "data", progress=False).select_tasks(TASKS).test
    evaluated = torch.sigmoid(table_logits(inference, test)).numpy()  # what mtrec evaluate scores the test split with
    np.testing.assert_array_equal(predicted, evaluated)
    np.testing.assert_array_equal(mtreclib.load(run).predict(pq.read_table(source)), evaluated)

    # The precision is the run's: scoring the same weights the other way gives other figures in bf16.
    other = "fp32" if inference.precision == "bf16" else "bf16"
    rescored = torch.sigmoid(logits(inference.model, test, batch_size=64, device=inference.device, precision=other)).numpy()
    gap = np.abs(rescored - evaluated).max()
    assert gap > 1e-4 and gap < 0.05, gap


def test_a_checkpoint_holds_its_configuration_and_schema_once(fixed_run):
    _, run, trained = fixed_run
    payload = checkpoint.load(run, "model")
    assert payload["version"] == checkpoint.VERSION == 2
    assert set(payload) == {"format", "version", "kind", "run", "state_dict", "epoch", "valid", "path"}
    assert set(payload["run"]) == {"dataset", "config", "schema", "encoding"}
    saved = ModelCheckpoint.read(run)
    assert saved.run.config.to_dict() == trained["config"] and saved.run.schema.task_names == TASKS
    assert saved.run.config.mto_config.task_weights == (1.0, 0.5) and saved.run.dataset == "myshop"
    last = checkpoint.load(run, "resume")
    assert last["config"] == trained["config"] and "run" not in last and "encoding" not in last


def test_the_trainers_validation_is_the_same_scoring(fixed_run):
    """The validation metrics training stored in best.pt are the scoring path's on the split training carved."""
    root, run, _ = fixed_run
    inference = load_checkpoint(run)
    train = load_dataset("myshop", root / "data", progress=False).select_tasks(TASKS).train
    _, valid = split_validation(train, 0.1)
    from mtreclib.core.metrics import logit_metrics

    assert logit_metrics(table_logits(inference, valid), valid.label_rows(), TASKS, groups=valid.group) == checkpoint.load(run, "model")["valid"]


def test_scoring_a_stream_of_batches_equals_scoring_the_table(fixed_run):
    root, run, _ = fixed_run
    inference = load_checkpoint(run)
    test = load_dataset("myshop", root / "data", progress=False).select_tasks(TASKS).test
    from mtreclib.data.loader import BatchLoader

    whole = logits(inference.model, test, batch_size=64, device=inference.device, precision=inference.precision)
    streamed = batch_logits(inference.model, BatchLoader(test, 64), inference.precision)  # joined pieces, rows unknown
    assert whole.shape == (120, 2) and torch.equal(whole, streamed)


def test_padding_passes_for_sharded_tables_are_made_and_dropped(fixed_run):
    """``forwards``: every process makes as many forward passes as the others; the extra ones' outputs are dropped."""
    root, run, _ = fixed_run
    inference = load_checkpoint(run)
    test = load_dataset("myshop", root / "data", progress=False).select_tasks(TASKS).test
    calls = []
    handle = inference.model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        short = test.select(slice(0, 40))
        padded = logits(inference.model, short, batch_size=32, device=inference.device, precision="fp32", forwards=4, spare=test)
    finally:
        handle.remove()
    assert calls == [32, 8, 32, 32]  # two batches of the rows, two of the spare table's first batch
    plain = logits(inference.model, short, batch_size=32, device=inference.device, precision="fp32")
    assert torch.equal(padded, plain)
