"""``mtrec tune``: TPE finds a known better learning rate, pruning stops a worse trial, workers share one
SQLite study, a rerun continues it, a killed worker loses only its running trial, the test split is
never touched, and bad input is one line before any trial."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import small_experiment

from mtreclib.cli import main
from mtreclib.core.settings import Search
from mtreclib.data.datasets import load_dataset
from mtreclib.training.experiment import run_experiment
from mtreclib.training.trainer import Trainer
from mtreclib.tuning import trial as trial_module
from mtreclib.tuning import tuner
from mtreclib.tuning.space import SearchSpace
from mtreclib.tuning.study import make_pruner
from mtreclib.tuning.trial import Objective
from mtreclib.tuning.workers import without_test

# A small model on a small generated dataset: a trial is an epoch or two of a few dozen steps.
SMALL = ["--embed-dim", "4", "--bottom-dims", "16,8", "--tower-dims", "8", "--batch-size", "128",
         "--threads", "1", "--model", "sharedbottom"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A dataset ``tiny`` in the processed layout, written by ``mtrec generate``."""
    folder = tmp_path_factory.mktemp("data")
    assert main(["generate", "--data-dir", str(folder), "--name", "tiny", "--train-rows", "3000", "--test-rows", "400"]) == 0
    return folder


def space_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def tune(data_dir: Path, db: Path, *flags: str) -> int:
    return main(["tune", "--dataset", "tiny", "--data-dir", str(data_dir), "--storage", f"sqlite:///{db}", "--study", "s", *SMALL, *flags])


def load(db: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def test_tpe_finds_the_better_learning_rate(data_dir, tmp_path):
    """A case built so that one learning rate region is better: in one epoch of 21 steps, Adam at
    1e-5 barely moves the weights from their initialisation, at 1e-2 it learns the data's signal."""
    db = tmp_path / "t.db"
    space = space_file(tmp_path, "replace: true\nlr: {low: 1.0e-5, high: 3.0e-2, log: true}\n")
    assert tune(data_dir, db, "--space", space, "--epochs", "1", "--trials", "10", "--startup-trials", "4", "--pruner", "none") == 0
    trials = [t for t in load(db).trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 10
    best = max(trials, key=lambda t: t.value)
    slow = [t.value for t in trials if t.params["lr"] < 1e-4]
    assert best.params["lr"] > 1e-3, [(t.params["lr"], t.value) for t in trials]
    assert slow and best.value > max(slow) + 0.05
    # After the random start-up trials, TPE samples where the good ones were: more often above 1e-3 than below.
    modelled = [t.params["lr"] for t in trials[4:]]
    assert sum(lr > 1e-3 for lr in modelled) > len(modelled) / 2, modelled


def test_the_pruner_stops_a_clearly_worse_trial_after_its_first_epoch(data_dir):
    dataset = without_test(load_dataset("tiny", str(data_dir)))
    config = small_experiment("sharedbottom", dataset="tiny", data_dir=str(data_dir), epochs=3, patience=0, threads=1)
    space = SearchSpace.of(config, {"lr": Search(low=1e-6, high=0.1, log=True)})
    study = optuna.create_study(direction="maximize", pruner=make_pruner(optuna, "median", 1, 3))
    study.enqueue_trial({"lr": 1e-2})  # learns
    study.enqueue_trial({"lr": 1e-5})  # barely moves in three epochs: its first epoch is far below
    study.optimize(Objective(optuna, config, space, dataset), n_trials=2)
    good, bad = study.trials
    assert good.state == optuna.trial.TrialState.COMPLETE and good.user_attrs["epochs"] == 3
    assert bad.state == optuna.trial.TrialState.PRUNED and bad.user_attrs["epochs"] == 1
    assert list(bad.intermediate_values) == [1] and bad.intermediate_values[1] < good.intermediate_values[1]
    # The value is the validation score the trainer kept its epoch on: patience 0 keeps the last.
    assert good.value == good.intermediate_values[3]


def test_two_worker_processes_share_one_sqlite_study(data_dir, tmp_path):
    db = tmp_path / "t.db"
    assert tune(data_dir, db, "--workers", "2", "--trials", "4", "--epochs", "1", "--max-steps", "5") == 0
    trials = load(db).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state.is_finished() for t in trials)
    assert sorted(t.user_attrs["worker"] for t in trials) == [0, 0, 1, 1]
    points = {tuple(sorted(t.params.items())) for t in trials}
    assert len(points) == 4, "each worker drew its own points"


def test_the_same_command_continues_the_study(data_dir, tmp_path, capsys):
    db = tmp_path / "t.db"
    command = ("--trials", "2", "--epochs", "1", "--max-steps", "5")
    assert tune(data_dir, db, *command) == 0
    first = load(db).trials
    assert tune(data_dir, db, *command) == 0
    trials = load(db).trials
    assert len(trials) == 4 and [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.params for t in trials[:2]] == [t.params for t in first]
    # The second call's sampler is seeded past the first's trials: it does not repeat their points.
    assert {tuple(sorted(t.params.items())) for t in trials[2:]}.isdisjoint({tuple(sorted(t.params.items())) for t in first})
    err = capsys.readouterr().err
    assert "(a new study)" in err and "(continuing it after 2 trials)" in err


def test_a_study_with_other_fixed_settings_is_refused(data_dir, tmp_path, capsys):
    db = tmp_path / "t.db"
    assert tune(data_dir, db, "--trials", "1", "--epochs", "1", "--max-steps", "3") == 0
    capsys.readouterr()
    assert tune(data_dir, db, "--trials", "1", "--epochs", "2", "--max-steps", "3") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "study 's'" in err and "tunes other settings (epochs is 1 there, 2 now)" in err


def test_a_killed_worker_loses_only_its_running_trial(data_dir, tmp_path):
    db = tmp_path / "t.db"
    command = [sys.executable, "-m", "mtreclib", "tune", "--dataset", "tiny", "--data-dir", str(data_dir), "--storage",
               f"sqlite:///{db}", "--study", "s", *SMALL, "--trials", "50", "--epochs", "3", "--patience", "0", "--pruner", "none"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def complete() -> int:
        if not db.exists():
            return 0
        try:
            return sum(t.state == optuna.trial.TrialState.COMPLETE for t in load(db).trials)
        except Exception:  # noqa: BLE001 - the study may not be created yet
            return 0

    try:
        deadline = time.monotonic() + 1200  # generous: a loaded CI machine runs a trial slowly
        while complete() < 1 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, f"tune stopped before it was killed: {process.stderr.read().decode()}"
        assert complete() >= 1, "no trial completed in 20 minutes"
        time.sleep(0.5)  # into the next trial
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    trials = load(db).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    unfinished = [t for t in trials if not t.state.is_finished()]
    assert len(done) >= 1 and len(unfinished) <= 1 and len(done) + len(unfinished) == len(trials)
    assert all(t.user_attrs["epochs"] == 3 for t in done)
    assert tune(data_dir, db, "--trials", "1", "--epochs", "3", "--patience", "0", "--pruner", "none") == 0
    after = load(db).trials
    assert [t.params for t in after[: len(done)]] == [t.params for t in done]
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in after) == len(done) + 1


class Tripwire:
    """A test split that fails the test when anything touches it."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name})")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


def test_tuning_never_touches_the_test_split(data_dir, tmp_path, monkeypatch):
    real = tuner.load_dataset

    def guarded(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), test=Tripwire())

    evaluated = []
    evaluate = Trainer.evaluate

    def spy(self, table):
        evaluated.append(len(table))
        return evaluate(self, table)

    monkeypatch.setattr(tuner, "load_dataset", guarded)
    monkeypatch.setattr(Trainer, "evaluate", spy)
    db = tmp_path / "t.db"
    assert tune(data_dir, db, "--trials", "2", "--epochs", "2", "--max-steps", "30", "--pruner", "none") == 0
    valid_rows = round(0.1 * 3000)
    assert evaluated and set(evaluated) == {valid_rows}  # validation after each epoch, nothing else
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in load(db).trials)


def test_a_run_without_its_test_split_reports_the_kept_epochs_validation_metrics(data_dir):
    dataset = dataclasses.replace(load_dataset("tiny", str(data_dir)), test=Tripwire())
    config = small_experiment("mmoe", dataset="tiny", data_dir=str(data_dir), epochs=2, max_steps=20, threads=1)
    record = run_experiment(config, dataset=without_test(dataset), announce=False, test=False)
    assert record.split == "valid" and "test" not in record.rows
    kept = record.history[record.best_epoch - 1]
    assert record.tasks == kept.valid and record.oracle is None


def _no_trial(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a trial ran")

    monkeypatch.setattr(trial_module, "run_experiment", refuse)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "mmoe-x"], "unknown model 'mmoe-x' (did you mean mmoe?); known models: singletask, "),
        (["--space", "SPACE:learning_rate: {low: 0.001, high: 0.01}"], "unknown setting 'learning_rate' for model sharedbottom with strategy ew; known: "),
        (["--space", "SPACE:dropout: {low: 0.1, high: 1.0}"], "dropout (--dropout) must be below 1, got 1.0"),
        (["--storage", "postgresql://tuner@127.0.0.1:9/studies"], "--storage postgresql://tuner@127.0.0.1:9/studies: cannot open the study database"),
        (["--storage", "sqlite:///FILE/t.db"], "cannot create the folder"),
        (["--timeout", "2 hours"], "timeout (--timeout) must be a duration such as 3600, 90m, 2h or 1h30m, got '2 hours'"),
        (["--dataset", "nowhere"], "dataset 'nowhere' not found"),
        (["--valid-fraction", "0"], "tuning selects settings on a validation split"),
    ],
)
def test_bad_input_is_one_line_before_any_trial(data_dir, tmp_path, monkeypatch, capsys, flags, message):
    _no_trial(monkeypatch)
    blocker = tmp_path / "FILE"
    blocker.write_text("a file where a folder would go")
    flags = [flag.replace("FILE", str(blocker)) for flag in flags]
    flags = [space_file(tmp_path, flag[len("SPACE:"):] + "\n") if flag.startswith("SPACE:") else flag for flag in flags]
    db = tmp_path / "t.db"
    assert tune(data_dir, db, "--trials", "1", "--epochs", "1", *flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtrec: error: ") and err.count("\n") == 0, err
    assert message in err


def test_without_optuna_the_error_says_how_to_install_it(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    assert tune(data_dir, tmp_path / "t.db", "--trials", "1") == 2
    assert capsys.readouterr().err.strip() == "mtrec: error: tuning needs Optuna, which is not installed: pip install 'mtreclib[tune]'"


def test_the_timeout_reads_durations():
    from mtreclib.tuning.config import duration_seconds

    assert [duration_seconds(text) for text in ("3600", "90m", "2h", "1h30m", "45s", "1.5h")] == [3600, 5400, 7200, 5400, 45, 5400]
    assert math.isclose(duration_seconds("0.5m"), 30)
