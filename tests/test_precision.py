"""``--precision auto``: fp32 without native bf16, else the faster of the two by a probe that leaves no trace."""

from __future__ import annotations

import pytest
import torch
from conftest import small_experiment

from mtreclib.config.resolve import with_changes
from mtreclib.data.loader import BatchLoader
from mtreclib.models import create_model
from mtreclib.runs.checkpoint import ModelCheckpoint
from mtreclib.training import precision as module
from mtreclib.training.experiment import run_experiment
from mtreclib.training.precision import MARGIN, resolve_precision


def _unused(*_args):
    raise AssertionError("the probe ran")


@pytest.mark.parametrize("asked", ["fp32", "bf16"])
def test_an_explicit_precision_is_kept_without_a_probe(asked):
    assert resolve_precision(asked, None, _unused, torch.device("cpu"), measure=_unused) == (asked, "asked for")


def test_auto_is_fp32_without_native_bf16_and_measures_nothing(monkeypatch):
    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: False)
    precision, why = resolve_precision("auto", None, _unused, torch.device("cpu"), measure=_unused)
    assert precision == "fp32" and "without native bf16" in why


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [(1.0, 0.5, "bf16"), (1.0, MARGIN, "bf16"), (1.0, 0.95, "fp32"), (1.0, 1.2, "fp32")])
def test_auto_keeps_bf16_only_when_the_probe_finds_it_clearly_faster(tiny_synthetic, monkeypatch, fp32, bf16, expected):
    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: True)
    model = create_model("mmoe", tiny_synthetic.schema)
    seconds = {"fp32": fp32, "bf16": bf16}
    precision, why = resolve_precision("auto", model, lambda: [], torch.device("cpu"), measure=lambda m, b, p, d: seconds[p])
    assert precision == expected and f"{fp32 * 1e3:.1f} ms in fp32" in why


def test_the_probe_leaves_weights_statistics_gradients_and_random_state_as_they_were(tiny_synthetic, monkeypatch):
    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: True)
    torch.manual_seed(0)
    model = create_model("mmoe", tiny_synthetic.schema, dropout=0.3)
    model.eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    rng = torch.get_rng_state()
    batch = next(iter(BatchLoader(tiny_synthetic.train, 256)))
    seen = []

    def measure(m, batches, precision, device):
        seen.append(precision)
        return module.step_seconds(m, batches, precision, device)  # the real probe: forward, backward, BatchNorm updates

    resolve_precision("auto", model, lambda: [batch], torch.device("cpu"), measure=measure)
    assert seen == ["fp32", "bf16"]
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert any("running_mean" in name for name in before)  # BatchNorm statistics were among what was compared
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng) and not model.training


def test_a_run_that_resolves_auto_to_fp32_is_the_fp32_run_and_saves_its_choice(tiny_synthetic, tmp_path, monkeypatch):
    # Native bf16 claimed and bf16 measured slower: the probe runs, and then must leave no trace.
    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(module, "step_seconds", lambda m, b, p, d: {"fp32": 1.0, "bf16": 2.0}[p])
    settings = dict(epochs=1, dropout=0.2, save=True)
    fp32 = run_experiment(small_experiment("mmoe", save_dir=str(tmp_path / "a"), precision="fp32", **settings), dataset=tiny_synthetic, announce=False)
    auto = small_experiment("mmoe", save_dir=str(tmp_path / "b"), precision="auto", **settings)
    record = run_experiment(auto, dataset=tiny_synthetic, announce=False)
    assert record.tasks == fp32.tasks and record.config["train"]["precision"] == "fp32"
    assert ModelCheckpoint.read(record.checkpoint).run.config.train.precision == "fp32"


def test_auto_resumes_with_the_precision_its_run_chose(tiny_synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(module, "step_seconds", lambda m, b, p, d: {"fp32": 1.0, "bf16": 0.5}[p])
    first = small_experiment("mmoe", save_dir=str(tmp_path), precision="auto", epochs=1, save=True)
    assert run_experiment(first, dataset=tiny_synthetic, announce=False).config["train"]["precision"] == "bf16"
    # The machine now finds fp32 faster; the resumed run keeps its bf16.
    monkeypatch.setattr(module, "step_seconds", lambda m, b, p, d: {"fp32": 0.5, "bf16": 1.0}[p])
    resumed = run_experiment(with_changes(first, epochs=2, resume="last"), dataset=tiny_synthetic, announce=False)
    assert resumed.config["train"]["precision"] == "bf16" and resumed.epochs_run == 2
