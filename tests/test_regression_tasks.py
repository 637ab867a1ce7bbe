"""Regression tasks beside binary ones: the spec's label types, the per-task loss (MSE, Huber),
RMSE and MAE, every model and a few strategies on mixed tasks, and what predict writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
from conftest import SMALL_CONFIG, random_batch, small_model
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mtreclib.cli import main
from mtreclib.comparison.plots import auc_figure, curves_figure
from mtreclib.comparison.summary import build_tables
from mtreclib.comparison.table import metrics_table
from mtreclib.config.experiment import TrainConfig
from mtreclib.core.errors import DataError, UserError
from mtreclib.core.metrics import logit_metrics
from mtreclib.core.schema import Batch, FeatureSchema
from mtreclib.core.settings import ConfigError
from mtreclib.data.datasets import load_dataset
from mtreclib.data.encoding import LabelEncoder, Place
from mtreclib.data.spec import DatasetSpec, LabelSpec, SpecError
from mtreclib.data.table import MultiTaskTable
from mtreclib.models import create_model, list_models, model_class
from mtreclib.models.base import RegressionLoss, task_bce, task_loss
from mtreclib.models.esmm import ESMM
from mtreclib.models.registry import model_kwargs
from mtreclib.mto import create_strategy, list_strategies, strategy_class
from mtreclib.runs.record import EpochRecord, Metrics, RunRecord
from mtreclib.serving.inference import load_checkpoint
from mtreclib.training.experiment import build_model
from mtreclib.training.trainer import Trainer, validation_score

CPU = torch.device("cpu")
# A click and a continuous target (a watch time), the roles PEPNet reads.
MIXED = FeatureSchema(
    field_dims=(5, 3, 11, 2), numerical_num=6, task_names=("click", "watch"), field_roles=("user", None, "item", "user"),
    task_types=("binary", "regression"),
)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def mixed_batch(size: int = 64, seed: int = 0) -> Batch:
    """``random_batch``'s rows with the second label a target the features determine: 3 x_0 + 1."""
    batch = random_batch(MIXED, size=size, seed=seed)
    labels = batch.labels.clone()
    labels[:, 1] = 3 * batch.numerical[:, 0] + 1
    return batch._replace(labels=labels)


# --- the loss, by hand -------------------------------------------------------------------------

OUTPUTS = torch.tensor([[0.0, 2.0], [1.0, -1.0]], dtype=torch.float64)
LABELS = torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64)  # errors of the regression column: 1.5 and -2
BCE = (math.log(2) + math.log(1 + math.e)) / 2  # -log sigmoid(0), -log(1 - sigmoid(1))


@pytest.mark.parametrize(
    "loss, expected",
    [
        (RegressionLoss("mse"), (1.5**2 + 2**2) / 2),
        # delta 1: both errors beyond it, linear: delta (|e| - delta / 2)
        (RegressionLoss("huber", 1.0), ((1.5 - 0.5) + (2 - 0.5)) / 2),
        # delta 2: both within it, half the square
        (RegressionLoss("huber", 2.0), (1.5**2 / 2 + 2**2 / 2) / 2),
    ],
)
def test_the_regression_loss_is_mse_or_huber_of_the_output_itself_beside_the_binary_bce(loss, expected):
    losses = task_loss(OUTPUTS, LABELS, regression=(1,), regression_loss=loss)
    assert losses[0].item() == pytest.approx(BCE, rel=1e-15)
    assert losses[1].item() == pytest.approx(expected, rel=1e-15)


def test_row_weights_weigh_the_regression_loss_as_they_weigh_bce():
    weights = torch.tensor([1.0, 3.0], dtype=torch.float64)
    losses = task_loss(OUTPUTS, LABELS, weights, regression=(1,))
    assert losses[1].item() == pytest.approx((1 * 1.5**2 + 3 * 2**2) / 4, rel=1e-15)
    assert losses[0].item() == pytest.approx(task_bce(OUTPUTS, LABELS, weights)[0].item(), rel=1e-15)


def test_without_regression_tasks_the_loss_is_task_bce_bit_for_bit():
    batch = random_batch(size=32)
    outputs = torch.randn(32, 2)
    assert torch.equal(task_loss(outputs, batch.labels), task_bce(outputs, batch.labels))
    model = small_model("mmoe")
    assert torch.equal(model.task_losses([batch]).tasks, task_bce(model.logits(batch), batch.labels))


def test_the_regression_loss_setting_reaches_the_model_through_the_trainer():
    model = small_model("mmoe", MIXED)
    Trainer(model, TrainConfig(regression_loss="huber", huber_delta=0.5), CPU, progress=False)
    assert model.regression_loss == RegressionLoss("huber", 0.5)
    with pytest.raises(ConfigError, match=r"^huber_delta \(--huber-delta\) is a setting of --regression-loss huber, not of --regression-loss mse$"):
        TrainConfig(huber_delta=0.5)


# --- metrics -----------------------------------------------------------------------------------


def test_rmse_and_mae_of_a_regression_task_by_hand_and_binary_metrics_unchanged():
    outputs = torch.tensor([[0.3, 1.0], [-0.2, 2.0], [1.5, 4.0]])
    labels = np.array([[1, 1.0], [0, 0.0], [1, 1.0]], dtype=np.float32)  # errors 0, 2, 3
    metrics = logit_metrics(outputs, labels, ("click", "watch"), ("binary", "regression"))
    assert metrics["watch"] == pytest.approx({"rmse": math.sqrt(13 / 3), "mae": 5 / 3}, rel=1e-12)
    assert metrics["click"] == logit_metrics(outputs[:, :1], labels[:, :1].astype(np.uint8), ("click",))["click"]


def test_model_selection_is_the_binary_mean_auc_or_minus_the_mean_rmse_without_binary_tasks():
    mixed = {"click": {"auc": 0.7, "logloss": 0.5}, "watch": {"rmse": 2.0, "mae": 1.0}}
    assert validation_score(mixed) == 0.7
    assert validation_score({"a": {"rmse": 2.0, "mae": 1.0}, "b": {"rmse": 4.0, "mae": 1.0}}) == -3.0


def test_a_results_file_holds_rmse_and_mae_for_a_regression_task_and_reads_back(tmp_path):
    tasks = {"click": Metrics(0.7, 0.5), "watch": Metrics(rmse=2.0, mae=1.5)}
    record = RunRecord(model="mmoe", dataset="d", tasks=tasks, config={})
    record.write(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["tasks"] == {"click": {"auc": 0.7, "logloss": 0.5}, "watch": {"rmse": 2.0, "mae": 1.5}}
    assert RunRecord.read(tmp_path / "r.json").tasks == tasks


def test_the_report_shows_each_tasks_own_metrics():
    tasks = {"click": Metrics(0.7, 0.5), "watch": Metrics(rmse=2.0, mae=1.5)}
    (table,) = build_tables([RunRecord(model="mmoe", dataset="d", tasks=tasks, config={}, seed=0)])
    header = metrics_table(table)[0]
    assert "click AUC" in header and "click log-loss" in header and "watch RMSE" in header and "watch MAE" in header
    assert "watch AUC" not in header


def test_the_plots_draw_a_regression_tasks_rmse():
    runs = []
    for seed, rmse in enumerate((2.0, 2.5)):
        valid = {"click": Metrics(0.6, 0.6), "watch": Metrics(rmse=rmse + 0.5, mae=1.0)}
        history = (EpochRecord(1, valid=valid), EpochRecord(2, valid={**valid, "watch": Metrics(rmse=rmse, mae=1.0)}))
        tasks = {"click": Metrics(0.7, 0.5), "watch": Metrics(rmse=rmse, mae=1.0)}
        runs.append(RunRecord(model="mmoe", dataset="d", tasks=tasks, config={}, seed=seed, history=history))
    (table,) = build_tables(runs)
    figure = auc_figure(table)
    FigureCanvasAgg(figure).draw()
    click, watch = figure.axes
    assert (click.get_ylabel(), watch.get_ylabel()) == ("test AUC", "test RMSE")
    assert watch.get_ylim()[0] <= 2.0 and watch.get_ylim()[1] >= 2.5  # the seeds' RMSEs are on the axis
    curves = curves_figure(table)
    FigureCanvasAgg(curves).draw()
    line = curves.axes[1].get_lines()[0]
    assert curves.axes[1].get_ylabel().startswith("validation RMSE") and list(line.get_ydata()) == [2.75, 2.25]


# --- the spec ----------------------------------------------------------------------------------


def spec_of(labels: list, **extra) -> DatasetSpec:
    return DatasetSpec.from_dict({"categorical": ["user"], "labels": labels, **extra}, path=Path("d/dataset.yaml"), files=False)


def test_a_label_is_binary_by_default_and_regression_when_it_says_so():
    spec = spec_of(["click", {"name": "watch", "column": "play_ms", "type": "regression", "transform": "log1p", "scale": 0.001}])
    assert [label.type for label in spec.labels] == ["binary", "regression"] and spec.label_dtype == np.float32
    assert spec_of(["click"]).label_dtype == np.uint8


def test_the_cache_key_changes_with_a_labels_type_and_transform():
    plain = spec_of(["click", {"name": "watch"}]).fingerprint()
    regression = spec_of(["click", {"name": "watch", "type": "regression"}]).fingerprint()
    transformed = spec_of(["click", {"name": "watch", "type": "regression", "transform": "log1p"}]).fingerprint()
    assert len({plain, regression, transformed}) == 3


@pytest.mark.parametrize(
    "labels, extra, message",
    [
        ([{"name": "watch", "type": "continuous"}], {}, "labels[0]: type"),
        ([{"name": "click", "transform": "log1p"}], {}, "labels[0]: transform is an option of regression labels"),
        ([{"name": "click", "scale": 2}], {}, "labels[0]: scale is an option of regression labels"),
        ([{"name": "watch", "type": "regression", "transform": "log"}], {}, "labels[0]: transform"),
        ([{"name": "watch", "type": "regression", "threshold": 3}], {}, "labels[0]: threshold is an option of binary labels"),
        ([{"name": "watch", "type": "regression", "scale": 0}], {}, "labels[0]: scale"),
        (["click", {"name": "watch", "type": "regression"}], {"implies": {"watch": "click"}}, "implies.watch: 'watch' is a regression label"),
        (
            [{"name": "click", "probability": "p"}, {"name": "watch", "type": "regression"}], {},
            "labels: probability: the oracle's columns need every label binary",
        ),
    ],
)  # fmt: skip
def test_a_label_type_mistake_is_one_line_naming_the_spec_and_key(labels, extra, message):
    with pytest.raises(SpecError) as error:
        spec_of(labels, **extra)
    text = str(error.value)
    assert text.startswith("d/dataset.yaml: ") and message in text and "\n" not in text


def test_a_regression_target_is_scaled_then_transformed_and_bad_values_name_row_and_column():
    place = Place("f.parquet", 1, lines=False)
    encoder = LabelEncoder(LabelSpec.build({"name": "watch", "column": "ms", "type": "regression", "transform": "log1p", "scale": 0.001}))
    values = encoder.encode(pa.array([0, 1000, 4000]), place)
    assert values.dtype == np.float32 and values.tolist() == pytest.approx([0.0, math.log(2), math.log(5)], rel=1e-6)
    with pytest.raises(DataError, match=r"f.parquet, row 2, column ms: expected a value >= 0 for transform: log1p, found -5"):
        encoder.encode(pa.array([1, -5]), place)
    with pytest.raises(DataError, match=r"row 1, column ms: missing label"):
        encoder.encode(pa.array([None, 2]), place)
    filled = LabelEncoder(LabelSpec.build({"name": "watch", "type": "regression", "fill": 0}))
    assert filled.encode(pa.array([None, 2.5]), place).tolist() == [0.0, 2.5]
    with pytest.raises(DataError, match=r"row 2, column watch: expected a number \(a regression target\), found 'lots'"):
        filled.encode(pa.array(["1", "lots"]), place)


# --- every model, a few strategies -------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_every_model_learns_a_regression_task_beside_a_binary_one_or_refuses_in_one_line(name):
    try:
        model = small_model(name, MIXED)
    except ValueError as error:
        # Only a model whose outputs are probabilities by design refuses, and says which task.
        assert issubclass(model_class(name), ESMM) and "'watch'" in str(error) and "\n" not in str(error)
        return
    torch.manual_seed(0)
    batch = mixed_batch(size=128)
    model.eval()
    outputs = model.logits(batch)
    assert outputs.shape == (128, 2) and torch.isfinite(outputs).all()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = [batch] * model.batches_per_step

    def loss() -> torch.Tensor:
        return model.task_losses(batches).tasks

    first = loss().detach()
    for _ in range(100):
        optimizer.zero_grad()
        loss().sum().backward()
        optimizer.step()
    assert torch.isfinite(loss()).all() and loss()[1].item() < 0.5 * first[1].item()  # the target is learnt


def test_esmm_refuses_a_regression_task_in_one_user_error_naming_the_model_and_task():
    schema = FeatureSchema(
        field_dims=(5, 3), numerical_num=1, task_names=("click", "buy", "watch"), task_implies=("", "click", ""),
        task_types=("binary", "binary", "regression"),
    )  # fmt: skip
    with pytest.raises(UserError, match=r"^esmm: ESMM cannot learn regression task 'watch': .*chained probabilities"):
        build_model("esmm", schema, create_model("esmm", schema.with_tasks(2)).Config())
    with pytest.raises(ValueError, match=r"calibrator.*'watch'"):
        create_model("aitm", MIXED, **model_kwargs("aitm", {**SMALL_CONFIG, "calibrator_weight": 0.6}))


def mixed_table(rows: int, seed: int) -> MultiTaskTable:
    batch = mixed_batch(size=rows, seed=seed)
    return MultiTaskTable(batch.categorical.int().numpy(), batch.numerical.numpy(), batch.labels.numpy())


@pytest.mark.parametrize("strategy", list_strategies())
def test_every_strategy_trains_mixed_tasks_through_the_trainer(strategy):
    torch.manual_seed(0)
    model = small_model("mmoe", MIXED)
    config = TrainConfig(batch_size=64, epochs=60, patience=0, lr=3e-2, seed=0)
    settings = strategy_class(strategy).Config.build({"task_weights": (1.0, 0.5)} if strategy == "fixed" else {})
    trainer = Trainer(model, config, CPU, strategy=create_strategy(strategy, 2, settings), progress=False)
    before = model.task_losses([mixed_batch(seed=1)]).tasks.detach()
    trainer.fit(mixed_table(64, seed=1), mixed_table(0, seed=2))  # one step an epoch, no validation
    after = model.task_losses([mixed_batch(seed=1)]).tasks.detach()
    assert torch.isfinite(after).all() and after[1] < 0.5 * before[1]
    metrics = trainer.evaluate(mixed_table(64, seed=2))
    assert set(metrics["watch"]) == {"rmse", "mae"} and set(metrics["click"]) == {"auc", "logloss"}


# --- a dataset with a regression label, end to end: train, predict, evaluate -------------------

SPEC = """\
format: parquet
train: train.parquet
test: test.parquet
categorical: [user_id, item_id]
numerical: [{name: x}]
labels:
  - click
  - {name: dwell, column: dwell_s, type: regression, transform: log1p}
"""


def rows(n: int, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    return {
        "user_id": rng.integers(0, 20, n).tolist(),
        "item_id": rng.integers(0, 30, n).tolist(),
        "x": x.tolist(),
        "click": (rng.random(n) < 0.4).astype(int).tolist(),
        "dwell_s": np.expm1(2 * x + 0.5).tolist(),  # log1p(dwell) = 2 x + 0.5
    }


def test_predict_writes_a_regression_tasks_prediction_and_evaluate_its_rmse(tmp_path, capsys):
    folder = tmp_path / "data" / "watch"
    folder.mkdir(parents=True)
    (folder / "dataset.yaml").write_text(SPEC)
    pq.write_table(pa.table(rows(400, 1)), folder / "train.parquet")
    pq.write_table(pa.table(rows(100, 2)), folder / "test.parquet")
    results = tmp_path / "results.json"
    assert main(["train", "--dataset", "watch", "--data-dir", str(tmp_path / "data"), "--save-dir", str(tmp_path / "runs"),
                 "--epochs", "3", "--embed-dim", "4", "--batch-size", "64", "--results", str(results), "--no-progress"]) == 0  # fmt: skip
    assert "dwell" in capsys.readouterr().out
    trained = json.loads(results.read_text())["tasks"]
    assert set(trained["dwell"]) == {"rmse", "mae"} and set(trained["click"]) == {"auc", "logloss"}
    run = tmp_path / "runs" / "watch_mmoe" / "run-1"
    inference = load_checkpoint(run)
    assert inference.schema.task_types == ("binary", "regression")
    # The reference: the training code path's outputs for the cached test rows.
    test = load_dataset("watch", tmp_path / "data", progress=False).test
    outputs = Trainer(inference.model, inference.config.train, CPU, progress=False).predict(test).numpy()
    scored = tmp_path / "scored.csv"
    assert main(["predict", str(run), "--input", str(folder / "test.parquet"), "--output", str(scored), "--no-progress"]) == 0
    written = pacsv.read_csv(scored)
    np.testing.assert_allclose(written.column("dwell").to_numpy(), outputs[:, 1], rtol=1e-6)  # the output itself
    np.testing.assert_allclose(written.column("click").to_numpy(), 1 / (1 + np.exp(-outputs[:, 0])), rtol=1e-6)  # a probability
    evaluated = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--results", str(evaluated)]) == 0
    assert json.loads(evaluated.read_text())["tasks"] == trained
    labels = test.label_rows()
    assert trained["dwell"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((outputs[:, 1].astype(np.float64) - labels[:, 1]) ** 2))), rel=1e-5)


def test_inspect_shows_a_regression_targets_mean(tmp_path, capsys):
    folder = tmp_path / "watch"
    folder.mkdir()
    (folder / "dataset.yaml").write_text(SPEC)
    train = rows(200, 1)
    pq.write_table(pa.table(train), folder / "train.parquet")
    pq.write_table(pa.table(rows(50, 2)), folder / "test.parquet")
    out = tmp_path / "inspect.json"
    assert main(["inspect", "watch", "--data-dir", str(tmp_path), "--json", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    expected = float(np.mean(2 * np.array(train["x"]) + 0.5))  # the mean of the log1p target
    assert report["regression_tasks"] == ["dwell"] and report["splits"]["train"]["positive_rate"]["dwell"] == pytest.approx(expected, rel=1e-5)
    assert f"mean {expected:.4g}" in capsys.readouterr().out
