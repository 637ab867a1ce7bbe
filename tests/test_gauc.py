"""GAUC: the equation on a hand case, scikit-learn's AUC per group, the results, evaluate, the report
table, ``--gauc-group`` and ``--select-metric gauc``."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import small_model
from sklearn.metrics import roc_auc_score
from test_predict import one_line_error
from test_report import fake_run, markdown_row

from mtreclib.cli import main
from mtreclib.config.experiment import TrainConfig
from mtreclib.core.gauc import group_auc
from mtreclib.core.metrics import task_metrics
from mtreclib.data.datasets import load_dataset
from mtreclib.data.table import split_validation
from mtreclib.serving.inference import load_checkpoint
from mtreclib.training.trainer import Trainer, validation_score


def sklearn_gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[float, int, int]:
    """The definition, one group at a time: scikit-learn's AUC per group with both classes, weighted by its rows."""
    total = weight = used = skipped = 0
    for group in np.unique(groups):
        rows = groups == group
        if 0 < labels[rows].sum() < rows.sum():
            total += rows.sum() * roc_auc_score(labels[rows], scores[rows])
            weight += rows.sum()
            used += 1
        else:
            skipped += 1
    return (total / weight if weight else math.nan), used, skipped


def test_gauc_of_a_hand_case_weighs_groups_by_rows_and_skips_a_one_class_group():
    # Group 7: positive 0.9 against negatives 0.5 and 0.95: one pair of two ranked right, AUC 1/2, 3 rows.
    # Group -3: positives 0.8, 0.3 against negatives 0.3, 0.1: pairs 1 + 1 + 1/2 (a tie) + 1 of 4, AUC 7/8, 4 rows.
    # Group 10^12: negatives only, left out. GAUC = (3 * 1/2 + 4 * 7/8) / 7 = 5/7. Rows interleaved on purpose.
    groups = np.array([7, -3, 10**12, 7, -3, -3, 10**12, 7, -3])
    labels = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.5, 0.3, 0.3, 0.2, 0.95, 0.1])
    result = group_auc(labels, scores, groups)
    assert result.value == pytest.approx(5 / 7, abs=1e-15)
    assert (result.groups, result.skipped) == (2, 1)
    assert roc_auc_score(labels[groups == 7], scores[groups == 7]) == 0.5
    assert roc_auc_score(labels[groups == -3], scores[groups == -3]) == 7 / 8
    assert sklearn_gauc(labels, scores, groups) == (pytest.approx(5 / 7, abs=1e-15), 2, 1)


@pytest.mark.parametrize("seed", range(4))
def test_gauc_equals_scikit_learns_auc_group_by_group_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = 5000
    groups = rng.integers(-50, 1000, n) * 7919  # ~5 rows a group: some of one row, some of one class; unsorted ids
    labels = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.uint8)
    scores = rng.random(n) if seed % 2 else np.round(rng.random(n), 1)  # even seeds: many ties within a group
    result = group_auc(labels, scores, groups)
    value, used, skipped = sklearn_gauc(labels, scores, groups)
    assert result.value == pytest.approx(value, abs=1e-12)
    assert (result.groups, result.skipped) == (used, skipped) and skipped > 0


def test_gauc_without_a_group_of_both_classes_is_nan_and_says_so():
    result = group_auc(np.array([1, 1, 0]), np.array([0.2, 0.4, 0.1]), np.array([1, 1, 2]))
    assert math.isnan(result.value) and (result.groups, result.skipped) == (0, 2)


def test_task_metrics_add_gauc_per_task_only_with_groups():
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    probabilities = np.array([[0.9, 0.2], [0.1, 0.7], [0.4, 0.3], [0.6, 0.1]])
    plain = task_metrics(probabilities, labels, ("a", "b"))
    assert "gauc" not in plain["a"]
    grouped = task_metrics(probabilities, labels, ("a", "b"), groups=np.array([1, 1, 2, 2]))
    # a: group 1 ranks its pair right (1), group 2 wrong (0), 2 rows each: 1/2. b: only group 1 has both classes.
    assert grouped["a"]["gauc"] == 0.5 and (grouped["a"]["gauc_groups"], grouped["a"]["gauc_skipped"]) == (2, 0)
    assert grouped["b"]["gauc"] == 1.0 and (grouped["b"]["gauc_groups"], grouped["b"]["gauc_skipped"]) == (1, 1)
    assert grouped["a"]["auc"] == plain["a"]["auc"]


def test_results_and_evaluate_hold_the_gauc_of_the_specs_group(shop_run, tmp_path, capsys):
    trained = json.loads(shop_run.results.read_text())
    inference = load_checkpoint(shop_run.run)
    table = load_dataset("myshop", shop_run.root / "data", progress=False).select_tasks(inference.tasks).test
    logits = Trainer(inference.model, inference.config.train, inference.device, progress=False).predict(table)
    probabilities = torch.sigmoid(logits.double()).numpy()
    sessions = pq.read_table(shop_run.root / "data" / "myshop" / "test.parquet").column("session_id").to_numpy()
    for t, task in enumerate(inference.tasks):
        value, used, skipped = sklearn_gauc(table.label_rows()[:, t], probabilities[:, t], sessions)
        metrics = trained["tasks"][task]
        assert metrics["gauc"] == pytest.approx(value, abs=1e-12) and (metrics["gauc_groups"], metrics["gauc_skipped"]) == (used, skipped)
    assert main(["evaluate", str(shop_run.run), "--results", str(tmp_path / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert "GAUC" in out and "groups used / skipped" in out
    assert json.loads((tmp_path / "eval.json").read_text())["tasks"] == trained["tasks"]


def test_gauc_group_groups_by_another_column(shop_run, tmp_path, capsys):
    shutil.copytree(shop_run.root / "data" / "myshop", tmp_path / "myshop", ignore=shutil.ignore_patterns("mtrec-cache"))
    results = tmp_path / "eval.json"
    argv = ["evaluate", str(shop_run.run), "--data-dir", str(tmp_path), "--gauc-group", "user_id", "--results", str(results)]
    assert main(argv) == 0
    users = pq.read_table(tmp_path / "myshop" / "test.parquet").column("user_id").to_pylist()
    for metrics in json.loads(results.read_text())["tasks"].values():
        assert metrics["gauc_groups"] + metrics["gauc_skipped"] == len(set(users))


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_an_unknown_gauc_group_column_is_one_line_naming_it_before_any_work(shop_run, tmp_path, capsys, command):
    shutil.copytree(shop_run.root / "data" / "myshop", tmp_path / "myshop", ignore=shutil.ignore_patterns("mtrec-cache"))
    head = ["train", "--dataset", "myshop", "--no-save"] if command == "train" else ["evaluate", str(shop_run.run)]
    assert main([*head, "--data-dir", str(tmp_path), "--gauc-group", "usr_id"]) == 2
    error = one_line_error(capsys)
    assert "--gauc-group usr_id" in error and "has no column 'usr_id'" in error and "user_id" in error
    assert not (tmp_path / "myshop" / "mtrec-cache").exists()  # refused before the cache is built


def test_select_metric_gauc_needs_a_group_column(aliexpress_dir, capsys):
    spec = aliexpress_dir / "AliExpress_NL" / "dataset.yaml"
    spec.write_text(
        "format: csv\ntrain: train.csv\ntest: test.csv\ncategorical: [categorical_1, categorical_2]\nlabels: [click, conversion]\n"
    )
    argv = ["train", "--dataset", "AliExpress_NL", "--data-dir", str(aliexpress_dir), "--select-metric", "gauc", "--no-save"]
    assert main(argv) == 2
    assert "--select-metric gauc: dataset AliExpress_NL has no group column" in one_line_error(capsys)


def test_select_metric_gauc_picks_the_epoch_of_the_best_mean_gauc(tiny_synthetic, monkeypatch):
    # Epoch 2 has the better AUC, epoch 3 the better GAUC: the setting decides which weights are kept.
    figures = {1: (0.60, 0.55), 2: (0.70, 0.52), 3: (0.65, 0.58)}
    assert validation_score({"a": {"auc": 0.7, "logloss": 0.1, "gauc": 0.6}, "b": {"auc": 0.5, "logloss": 0.1, "gauc": 0.4}}, "gauc") == 0.5

    def best_epoch(select_metric: str) -> int:
        epochs = iter(figures.values())

        def canned(self, table):
            auc, gauc = next(epochs)
            return {task: {"auc": auc, "logloss": 0.5, "gauc": gauc, "gauc_groups": 1, "gauc_skipped": 0} for task in self.task_names}

        monkeypatch.setattr(Trainer, "evaluate", canned)
        torch.manual_seed(0)
        config = TrainConfig(batch_size=512, epochs=3, patience=3, select_metric=select_metric)
        trainer = Trainer(small_model("mmoe", tiny_synthetic.schema), config, torch.device("cpu"), progress=False)
        train, valid = split_validation(tiny_synthetic.train, 0.2)
        return trainer.fit(train, valid).best_epoch

    assert best_epoch("auc") == 2 and best_epoch("gauc") == 3


def test_the_report_has_a_gauc_column_only_where_runs_have_one(tmp_path, capsys):
    runs = tmp_path / "runs"
    for model, seed in (("good", 0), ("weak", 0)):
        run = fake_run(model, seed)
        run["dataset"] = "grouped"
        for task, metrics in run["tasks"].items():
            metrics.update(gauc=metrics["auc"] - 0.05, gauc_groups=10, gauc_skipped=2)
        (runs / model).mkdir(parents=True, exist_ok=True)
        (runs / model / "grouped.json").write_text(json.dumps(run))
        (runs / model / "plain.json").write_text(json.dumps({**fake_run(model, seed), "dataset": "plain"}))
    out = tmp_path / "report"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    text = (out / "results.md").read_text()
    grouped, plain = text.split("## grouped")[1].split("## plain")
    assert "click GAUC" in grouped and "GAUC" not in plain
    assert markdown_row(grouped, "good")[2] == f"**{0.800 - 0.05:.4f}**"  # AUC, then GAUC, then log-loss
    assert "GAUC: the AUC within each group" in text
