"""Resuming a run: a run interrupted after an epoch and resumed ends bitwise equal, on CPU, to one
that was never interrupted, for every model; a killed ``mtrec train`` picks up where it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import small_experiment

from mtreclib.config.resolve import with_changes
from mtreclib.core.errors import UserError
from mtreclib.models import list_models
from mtreclib.runs import checkpoint
from mtreclib.runs.checkpoint import RunDirectory
from mtreclib.training.experiment import run_experiment


def _without_times(record) -> list[dict]:
    return [{k: v for k, v in vars(epoch).items() if k != "train_seconds"} for epoch in record.history]


def _best_state(record) -> dict[str, torch.Tensor]:
    return checkpoint.load(record.checkpoint, "model")["state_dict"]


@pytest.mark.parametrize("name", list_models())
def test_a_run_resumed_after_an_epoch_ends_bitwise_equal_to_an_uninterrupted_one(tiny_synthetic, tmp_path, name):
    settings = dict(epochs=3, patience=2, dropout=0.2, lr=5e-3)
    whole = run_experiment(small_experiment(name, save_dir=str(tmp_path / "a"), save=True, **settings), dataset=tiny_synthetic, announce=False)
    # The same run, stopped after its first epoch (as if killed), then resumed with the full epoch count.
    first = small_experiment(name, save_dir=str(tmp_path / "b"), save=True, **{**settings, "epochs": 1})
    run_experiment(first, dataset=tiny_synthetic, announce=False)
    resumed = run_experiment(with_changes(first, epochs=3, resume="last"), dataset=tiny_synthetic, announce=False)
    assert resumed.tasks == whole.tasks and resumed.best_epoch == whole.best_epoch and resumed.steps == whole.steps
    assert _without_times(resumed) == _without_times(whole)
    a, b = _best_state(whole), _best_state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert resumed.checkpoint == str(tmp_path / "b" / "synthetic_" f"{name}" / "run-1" / "best.pt")  # the same run folder


def test_resume_refuses_other_settings_and_a_run_that_does_not_exist(tiny_synthetic, tmp_path):
    config = small_experiment(save_dir=str(tmp_path), save=True, epochs=1)
    with pytest.raises(UserError, match="no run of mmoe on synthetic to resume"):
        run_experiment(with_changes(config, resume="last"), dataset=tiny_synthetic, announce=False)
    run_experiment(config, dataset=tiny_synthetic, announce=False)
    with pytest.raises(UserError, match=r"the settings differ from that run's \(train.lr was 0.001, now 0.01\)"):
        run_experiment(with_changes(config, resume="last", lr=0.01, epochs=2), dataset=tiny_synthetic, announce=False)
    with pytest.raises(UserError, match="--no-save"):
        run_experiment(with_changes(config, resume="last", save=False), dataset=tiny_synthetic, announce=False)


def test_a_second_run_gets_its_own_folder_and_never_overwrites_the_first(tiny_synthetic, tmp_path):
    config = small_experiment(save_dir=str(tmp_path), save=True, epochs=1, max_steps=2)
    first = run_experiment(config, dataset=tiny_synthetic, announce=False)
    stamp = Path(first.checkpoint).stat().st_mtime_ns
    second = run_experiment(with_changes(config, max_steps=1), dataset=tiny_synthetic, announce=False)
    assert first.checkpoint.endswith("run-1/best.pt") and second.checkpoint.endswith("run-2/best.pt")
    assert Path(first.checkpoint).stat().st_mtime_ns == stamp
    runs = RunDirectory.existing(tmp_path, "synthetic", "mmoe")
    assert [r.path.name for r in runs] == ["run-1", "run-2"]
    assert all((r.path / name).is_file() for r in runs for name in ("best.pt", "last.pt", "config.yaml", "results.json"))


def _mtrec(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtreclib", *args]


def test_a_killed_mtrec_train_resumes_where_it_was(tmp_path):
    data = tmp_path / "data"
    assert subprocess.run(_mtrec("generate", "--data-dir", str(data), "--name", "tiny", "--train-rows", "6000", "--test-rows", "500"),
                          capture_output=True).returncode == 0  # fmt: skip
    flags = ["train", "--dataset", "tiny", "--data-dir", str(data), "--epochs", "4", "--patience", "0", "--embed-dim", "8",
             "--bottom-dims", "32,16", "--tower-dims", "8", "--expert-num", "2", "--batch-size", "128", "--threads", "1",
             "--device", "cpu"]  # fmt: skip
    whole = subprocess.run(_mtrec(*flags, "--save-dir", str(tmp_path / "whole"), "--no-progress"), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    save = tmp_path / "killed"
    process = subprocess.Popen(_mtrec(*flags, "--save-dir", str(save)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = save / "tiny_mmoe" / "run-1" / "last.pt"
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = checkpoint.load(last, "resume")
    done = state["loop"]["epochs_run"]
    assert 1 <= done < 4, "killed after its first epoch and before the end"
    resumed = subprocess.run(_mtrec(*flags, "--save-dir", str(save), "--resume", "--no-progress"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {done}" in resumed.stderr
    # Same numbers as the run that was never killed.
    metrics = [line for line in whole.stdout.splitlines() if line.startswith(("click", "conversion"))]
    assert metrics and metrics == [line for line in resumed.stdout.splitlines() if line.startswith(("click", "conversion"))]
