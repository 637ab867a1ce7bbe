"""``mtrec benchmark --tuned``: each study's best settings retrained over seeds beside its defaults, tested
once; ``mtrec report`` shows both rows, the budget, and the studies' plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
from matplotlib.image import imread

from mtreclib.cli import main
from mtreclib.comparison import runner
from mtreclib.runs.record import RunRecord
from mtreclib.training.experiment import run_experiment

SMALL = ["--embed-dim", "4", "--bottom-dims", "16,8", "--tower-dims", "8", "--batch-size", "128", "--threads", "1",
         "--epochs", "1", "--max-steps", "5", "--no-progress"]


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> tuple[Path, Path]:
    """A dataset ``tiny`` and a database with two studies of it: MMoE (3 trials) and ESMM (2)."""
    folder = tmp_path_factory.mktemp("tuned")
    data = folder / "data"
    assert main(["generate", "--data-dir", str(data), "--name", "tiny", "--train-rows", "1500", "--test-rows", "300"]) == 0
    db = folder / "t.db"
    tune = ["tune", "--dataset", "tiny", "--data-dir", str(data), "--storage", f"sqlite:///{db}", *SMALL[:-1]]
    assert main([*tune, "--model", "mmoe", "--expert-num", "2", "--trials", "3", "--study", "mmoe-s"]) == 0
    assert main([*tune, "--model", "esmm", "--trials", "2", "--study", "esmm-s"]) == 0
    return data, db


class Spy:
    def __init__(self, monkeypatch):
        self.configs = []

        def spy(config, *, dataset=None, announce=True):
            self.configs.append(config)
            return run_experiment(config, dataset=dataset, announce=announce)

        monkeypatch.setattr(runner, "run_experiment", spy)


def test_each_study_is_retrained_at_its_best_and_at_its_defaults_and_reported(studies, tmp_path, monkeypatch, capsys):
    data, db = studies
    out = tmp_path / "runs"
    spy = Spy(monkeypatch)
    assert main(["benchmark", "--tuned", f"sqlite:///{db}", "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    assert len(spy.configs) == 8  # 2 studies x (defaults, tuned) x 2 seeds, each tested once
    assert all(config.data.data_dir == str(data) for config in spy.configs)  # read where the study was tuned

    best = optuna.load_study(study_name="mmoe-s", storage=f"sqlite:///{db}").best_trial
    tuned = RunRecord.read(out / "tiny" / "mmoe@mmoe-s" / "seed1.json")
    default = RunRecord.read(out / "tiny" / "mmoe" / "seed1.json")
    assert tuned.split == default.split == "test" and tuned.seed == default.seed == 1
    assert tuned.config["train"]["lr"] == best.params["lr"] and tuned.config["model_config"]["dropout"] == best.params["dropout"]
    # The fixed part is the study's: its embedding size and epochs in both rows; the searched settings at their defaults.
    for record in (tuned, default):
        assert record.config["model_config"]["embed_dim"] == 4 and record.config["model_config"]["expert_num"] == 2
        assert record.config["train"]["epochs"] == 1
    assert default.config["train"]["lr"] == 1e-3 and default.config["model_config"]["dropout"] == 0.2 and default.tuned is None
    assert tuned.tuned["name"] == "mmoe-s" and tuned.tuned["trials"]["complete"] + tuned.tuned.get("pruned", 0) >= 1
    assert sum(tuned.tuned["trials"].values()) == 3 and tuned.tuned["epochs"] >= 3 and tuned.tuned["cpu_seconds"] > 0
    assert json.loads((out / "studies" / "mmoe-s.json").read_text())["summary"]["best_trial"] == best.number

    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = (out / "report" / "results.md").read_text()
    for label in ("| mmoe |", "| mmoe (tuned) |", "| esmm |", "| esmm (tuned) |"):
        assert label in text
    assert "The searches behind the tuned rows on tiny" in text and "| mmoe (tuned) | mmoe-s | 3 (" in text
    assert "A row per model and multi-task optimisation strategy" not in text
    assert "Warning: the runs were made with different settings" not in text  # searched settings differ by design
    for study in ("mmoe-s", "esmm-s"):
        for plot in ("history", "importances", "epochs"):
            name = f"study_{study}_{plot}.png"
            assert f"({name})" in text
            assert imread(out / "report" / name).shape[0] > 100
    rows = list(csv.DictReader((out / "report" / "results.csv").open()))
    assert {(r["model"], r["study"]) for r in rows} >= {("mmoe", ""), ("mmoe", "mmoe-s"), ("esmm", ""), ("esmm", "esmm-s")}
    assert next(r for r in rows if r["study"] == "mmoe-s")["tuning_trials"] == "3"

    # A second call has nothing left to run.
    spy.configs.clear()
    assert main(["benchmark", "--tuned", f"sqlite:///{db}", "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    assert spy.configs == []


def test_a_study_by_name_and_a_database_file(studies, tmp_path, monkeypatch):
    data, db = studies
    spy = Spy(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tune.db").write_bytes(db.read_bytes())  # the default database
    assert main(["benchmark", "--tuned", "esmm-s", "--seeds", "1", "--out", "out", "--no-progress"]) == 0
    assert sorted(c.model for c in spy.configs) == ["esmm", "esmm"]
    spy.configs.clear()
    assert main(["benchmark", "--tuned", str(db), "--seeds", "1", "--out", "out2", "--no-progress"]) == 0
    assert sorted(c.model for c in spy.configs) == ["esmm", "esmm", "mmoe", "mmoe"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tuned", "DB", "--models", "mmoe"], "--tuned takes the models, datasets and strategies from its studies; leave out --models"),
        (["--tuned", "no-such-study"], "--tuned no-such-study: no study of that name in sqlite:///runs/tune.db"),
        (["--tuned", "sqlite:///EMPTY"], "no such database file"),
    ],
)
def test_bad_tuned_flags_are_one_line(studies, tmp_path, monkeypatch, capsys, flags, message):
    _, db = studies
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tune.db").write_bytes(db.read_bytes())
    flags = [flag.replace("EMPTY", str(tmp_path / "none.db")).replace("DB", f"sqlite:///{db}") for flag in flags]
    capsys.readouterr()
    assert main(["benchmark", *flags, "--seeds", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
