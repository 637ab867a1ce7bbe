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
from mtreclib.training.trainer import Trainer


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


def _assert_same_run(resumed, whole) -> None:
    assert resumed.tasks == whole.tasks and resumed.best_epoch == whole.best_epoch and resumed.steps == whole.steps
    assert _without_times(resumed) == _without_times(whole)
    a, b = _best_state(whole), _best_state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


class Killed(Exception):
    """Stands for the process dying during an epoch."""


# A cosine is planned over the run's length, so its run is interrupted as a kill would, inside its
# second epoch with its settings unchanged; a step schedule does not depend on the length, and
# takes the pattern above (stopped after an epoch, resumed with more).
SCHEDULES = {
    "warmup-cosine": dict(optimizer="adamw", lr_schedule="warmup-cosine", warmup_steps=4, lr_min=1e-4, clip_grad_norm=0.5, weight_decay=1e-2),
    "step": dict(optimizer="adagrad", lr_schedule="step", lr_step_epochs=2, lr_gamma=0.5, clip_grad_norm=0.5),
}


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_a_run_with_a_schedule_and_clipping_resumes_bitwise(tiny_synthetic, tmp_path, monkeypatch, schedule):
    settings = {"epochs": 3, "patience": 2, "dropout": 0.2, "lr": 5e-3, "mto": "uw", **SCHEDULES[schedule]}
    whole = run_experiment(small_experiment(save_dir=str(tmp_path / "a"), save=True, **settings), dataset=tiny_synthetic, announce=False)
    if schedule == "warmup-cosine":
        first = small_experiment(save_dir=str(tmp_path / "b"), save=True, **settings)
        train_epoch = Trainer._train_epoch

        def dies_in_the_second_epoch(self, loader, epoch, *args):
            if epoch == 1:
                raise Killed
            return train_epoch(self, loader, epoch, *args)

        monkeypatch.setattr(Trainer, "_train_epoch", dies_in_the_second_epoch)
        with pytest.raises(Killed):
            run_experiment(first, dataset=tiny_synthetic, announce=False)
        monkeypatch.undo()
    else:
        first = small_experiment(save_dir=str(tmp_path / "b"), save=True, **{**settings, "epochs": 1})
        run_experiment(first, dataset=tiny_synthetic, announce=False)
    assert checkpoint.load(tmp_path / "b" / "synthetic_mmoe" / "run-1" / "last.pt", "resume")["loop"]["epochs_run"] == 1
    resumed = run_experiment(with_changes(first, epochs=3, resume="last"), dataset=tiny_synthetic, announce=False)
    _assert_same_run(resumed, whole)


def test_a_cosine_cannot_be_resumed_over_another_length(tiny_synthetic, tmp_path):
    config = small_experiment(save_dir=str(tmp_path), save=True, epochs=1, patience=0, lr_schedule="warmup-cosine", warmup_steps=2)
    run_experiment(config, dataset=tiny_synthetic, announce=False)
    # 2,700 training rows (3,000 less the validation tenth) in batches of 256: 10 steps an epoch.
    with pytest.raises(UserError, match=r"^--resume: the warmup-cosine schedule was planned over 10 optimizer steps and would now be over 20; "):
        run_experiment(with_changes(config, resume="last", epochs=2), dataset=tiny_synthetic, announce=False)


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


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    """A data dir holding ``tiny``: the generator's processed-layout CSV at 1,500 training rows."""
    from mtreclib.cli import main

    assert main(["generate", "--data-dir", str(tmp_path / "data"), "--name", "tiny", "--train-rows", "1500", "--test-rows", "300"]) == 0
    return tmp_path / "data"


def _flags(data: Path, save: Path) -> list[str]:
    return ["train", "--dataset", "tiny", "--data-dir", str(data), "--save-dir", str(save), "--patience", "0", "--embed-dim", "4",
            "--expert-num", "2", "--batch-size", "256", "--no-progress", "--device", "cpu"]  # fmt: skip


def test_resume_run_reads_the_runs_configuration_so_no_flag_is_repeated(tiny_csv, tmp_path, capsys):
    from mtreclib.cli import main

    run = tmp_path / "runs" / "tiny_mmoe" / "run-1"
    assert main([*_flags(tiny_csv, tmp_path / "runs"), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0  # the dataset, data dir, sizes: from run/config.yaml
    captured = capsys.readouterr()
    assert "resuming after epoch 1" in captured.err and f"run folder {run}" in captured.err and "tiny" in captured.out
    assert checkpoint.load(run, "resume")["loop"]["epochs_run"] == 2
    assert main(["train", "--resume", str(run), "--epochs", "3", "--embed-dim", "8"]) == 2  # a setting the run may not change
    assert "the settings differ from that run's (model_config.embed_dim was 4, now 8)" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == f"mtrec: error: --resume {tmp_path / 'runs'}: not a run folder (it has neither last.pt nor config.yaml)\n"


def test_a_run_interrupted_before_its_first_epoch_says_how_to_resume_and_resumes(tiny_csv, tmp_path, monkeypatch, capsys):
    from mtreclib.cli import main

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    assert main([*_flags(tiny_csv, tmp_path / "runs"), "--epochs", "1"]) == 130
    run = tmp_path / "runs" / "tiny_mmoe" / "run-1"
    assert capsys.readouterr().err.splitlines()[-1] == f"mtrec: interrupted; mtrec train --resume {run} continues this run"
    assert not (run / "last.pt").exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert f"mtrec: {run} was stopped before its first epoch ended: training it from the start" in err and f"run folder {run}" in err
    assert checkpoint.load(run, "resume")["loop"]["epochs_run"] == 1 and (run / "results.json").is_file()
    assert [r.path for r in RunDirectory.existing(tmp_path / "runs", "tiny", "mmoe")] == [run]  # no second run folder
