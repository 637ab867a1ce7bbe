"""The training loop: early stopping, checkpoints, step limits, reproducibility, results."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import small_experiment, small_model

from mtreclib.config.experiment import TrainConfig
from mtreclib.config.resolve import with_changes
from mtreclib.data.table import split_validation
from mtreclib.models import list_models
from mtreclib.runs.record import SCHEMA_VERSION, RunRecord
from mtreclib.training.experiment import run_experiment
from mtreclib.training.trainer import Trainer

QUIET = TrainConfig(batch_size=256)


class SavedBest:
    """Checkpoints kept in memory: what the trainer asked to save."""

    def __init__(self):
        self.best = []
        self.last = []

    def save_best(self, state_dict, epoch, valid):
        self.best.append((epoch, {k: v.clone() for k, v in state_dict.items()}))

    def save_last(self, state):
        self.last.append(state)


def fit(dataset, model_name="mmoe", checkpoints=None, **train):
    torch.manual_seed(0)
    model = small_model(model_name, dataset.schema)
    trainer = Trainer(model, replace(QUIET, **train), torch.device("cpu"), progress=False, checkpoints=checkpoints)
    train_rows, valid_rows = split_validation(dataset.train, 0.2)
    return trainer, trainer.fit(train_rows, valid_rows)


def test_patience_zero_trains_every_epoch_and_keeps_the_last(tiny_synthetic):
    trainer, result = fit(tiny_synthetic, epochs=3, patience=0)
    assert result.epochs_run == 3 and result.best_epoch == 3 and len(result.history) == 3
    assert result.steps == 3 * (2400 // 256)  # the short last batch of each epoch is dropped


def test_early_stopping_stops_after_patience_epochs_without_improvement(tiny_synthetic):
    # A learning rate this high makes validation AUC wander, so that patience decides.
    trainer, result = fit(tiny_synthetic, epochs=30, patience=1, lr=0.3)
    scores = [record["valid_score"] for record in result.history]
    best = int(np.argmax(scores))
    assert result.best_epoch == best + 1
    assert result.epochs_run == best + 2 < 30  # one epoch without improvement, then stop


def test_best_weights_are_reloaded_after_early_stopping(tiny_synthetic):
    trainer, result = fit(tiny_synthetic, epochs=30, patience=2, lr=0.3)
    _, valid_rows = split_validation(tiny_synthetic.train, 0.2)
    best = result.history[result.best_epoch - 1]["valid"]
    again = trainer.evaluate(valid_rows)
    for task in best:
        assert math.isclose(again[task]["auc"], best[task]["auc"], rel_tol=1e-9)


def test_max_steps_stops_mid_epoch(tiny_synthetic):
    _, result = fit(tiny_synthetic, epochs=5, max_steps=4)
    assert result.steps == 4 and result.epochs_run == 1 and result.train_samples == 4 * 256


def test_metaheac_steps_once_per_two_batches(tiny_synthetic):
    _, result = fit(tiny_synthetic, "metaheac", epochs=1, patience=0)
    assert result.steps == math.ceil((2400 // 256) / 2)


def test_the_last_best_checkpoint_holds_the_weights_training_ends_with(tiny_synthetic):
    saved = SavedBest()
    trainer, result = fit(tiny_synthetic, epochs=3, patience=2, lr=0.3, checkpoints=saved)
    epoch, state = saved.best[-1]
    assert epoch == result.best_epoch and len(saved.last) == result.epochs_run
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(state[key], value)


def test_patience_needs_a_validation_split(tiny_synthetic):
    from mtreclib.core.errors import UserError

    with pytest.raises(UserError, match="validation"):
        run_experiment(small_experiment(epochs=1, valid_fraction=0.0), dataset=tiny_synthetic)


@pytest.mark.parametrize("name", list_models())
def test_same_seed_gives_the_same_results_on_cpu(tiny_synthetic, name):
    config = small_experiment(name, epochs=1, max_steps=3)
    first = run_experiment(config, dataset=tiny_synthetic)
    second = run_experiment(config, dataset=tiny_synthetic)
    assert first.tasks == second.tasks and first.history[0].train_loss == second.history[0].train_loss
    other = run_experiment(with_changes(config, seed=1), dataset=tiny_synthetic)
    assert other.tasks != first.tasks


def test_results_have_the_documented_fields_and_read_back_equal(tiny_synthetic, tmp_path):
    record = run_experiment(small_experiment(epochs=2), dataset=tiny_synthetic)
    assert record.model == "mmoe" and record.dataset == "synthetic" and record.schema_version == SCHEMA_VERSION
    assert set(record.tasks) == {"click", "conversion"} == set(record.oracle)
    for metrics in (*record.tasks.values(), *record.oracle.values()):
        assert 0 < metrics.auc <= 1 and metrics.logloss > 0
    assert record.train_samples_per_sec > 0
    assert [h.epoch for h in record.history] == [1, 2] and all(h.complete for h in record.history)
    assert record.config["model"] == "mmoe" and record.config["train"]["epochs"] == 2
    record.write(tmp_path / "r.json")
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["model"] == "mmoe" and payload["schema_version"] == SCHEMA_VERSION
    assert RunRecord.read(tmp_path / "r.json") == record


def test_training_learns_the_synthetic_task(tmp_path):
    """Well above chance after a few epochs, and not above the oracle by more than noise."""
    from mtreclib.data import synthetic
    from mtreclib.data.datasets import generated_dataset

    config = replace(synthetic.PRESETS["synthetic"], train_rows=10_000, test_rows=4_000)
    dataset = generated_dataset("synthetic", config, tmp_path, progress=False)
    record = run_experiment(small_experiment(epochs=4, patience=0, lr=1e-2), dataset=dataset)
    for task, floor in (("click", 0.68), ("conversion", 0.6)):
        assert floor < record.tasks[task].auc < record.oracle[task].auc + 0.02


def test_bf16_precision_trains_and_evaluates_under_autocast(tiny_synthetic):
    """The forward passes run in bf16 (a probe sees bf16 products), weights and loss stay float32."""
    torch.manual_seed(0)
    model = small_model("mmoe", tiny_synthetic.schema)
    seen: list[torch.dtype] = []
    model.towers.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    trainer = Trainer(model, replace(QUIET, epochs=1, patience=0, max_steps=3, precision="bf16"), torch.device("cpu"), progress=False)
    train_rows, valid_rows = split_validation(tiny_synthetic.train, 0.2)
    result = trainer.fit(train_rows, valid_rows)
    assert result.steps == 3 and math.isfinite(result.history[0]["train_loss"])
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    metrics = result.history[0]["valid"]
    assert all(0 < m["auc"] < 1 and math.isfinite(m["logloss"]) for m in metrics.values())


def test_unknown_precision_is_a_user_error(tiny_synthetic):
    from mtreclib.core.errors import UserError

    with pytest.raises(UserError, match="precision"):
        small_experiment(epochs=1, precision="fp16")


def test_trainer_adam_makes_the_same_updates_as_plain_adam():
    """Fused where PyTorch can: the same update as the original's ``torch.optim.Adam``."""
    from mtreclib.training.trainer import adam

    generator = torch.Generator().manual_seed(0)
    shapes = [(10, 5), (7,)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
    plain = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    optimizers = [adam(ours, replace(QUIET, lr=1e-2, weight_decay=1e-3), torch.device("cpu")),
                  torch.optim.Adam(plain, lr=1e-2, weight_decay=1e-3)]
    for _ in range(5):
        grads = [torch.randn(s, generator=generator) for s in shapes]
        for parameters, optimizer in zip((ours, plain), optimizers):
            for p, g in zip(parameters, grads):
                p.grad = g.clone()
            optimizer.step()
    for p, q in zip(ours, plain):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert not torch.equal(ours[0], torch.randn(shapes[0], generator=torch.Generator().manual_seed(0)))  # they moved


def test_compile_option_compiles_the_model_in_place(monkeypatch, tiny_synthetic):
    """In place, so that the model's own training_loss goes through the compiled forward.

    (Compiling for real takes minutes on two cores: the option's effect on speed is measured by
    benchmarks/throughput.py --compile, not here.)"""
    model = small_model("mmoe", tiny_synthetic.schema)
    calls = []
    monkeypatch.setattr(model, "compile", lambda *a, **k: calls.append((a, k)))
    Trainer(model, replace(QUIET, compile=True), torch.device("cpu"), progress=False)
    assert calls == [((), {})]
    Trainer(small_model("mmoe", tiny_synthetic.schema), QUIET, torch.device("cpu"), progress=False)
    assert len(calls) == 1
