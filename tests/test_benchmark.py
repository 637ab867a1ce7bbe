"""``mtrec benchmark``: one JSON per run, resuming after a kill or an interruption, failures recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from matplotlib.image import imread

from mtreclib.cli import main
from mtreclib.comparison import runner
from mtreclib.comparison.runner import RunSpec, plan_runs
from mtreclib.runs.record import RunRecord
from mtreclib.training.experiment import run_experiment

# Tiny settings: a few optimizer steps of small models on a small generated dataset.
FAST = ["--epochs", "1", "--max-steps", "2", "--embed-dim", "4", "--expert-num", "2", "--batch-size", "128", "--no-progress"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A small dataset ``tiny`` in the processed layout, written by ``mtrec generate``."""
    folder = tmp_path_factory.mktemp("data")
    assert main(["generate", "--data-dir", str(folder), "--name", "tiny", "--train-rows", "800", "--test-rows", "400"]) == 0
    return folder


def benchmark(data_dir: Path, out: Path, *flags: str) -> int:
    return main(["benchmark", "--datasets", "tiny", "--data-dir", str(data_dir), "--out", str(out), *FAST, *flags])


class Spy:
    """Wraps ``run_experiment`` to record which runs execute; can fail chosen ones."""

    def __init__(self, monkeypatch, fail=lambda config: None):
        self.executed: list[tuple[str, str, int]] = []
        self.fail = fail
        def spy(config, *, dataset=None, announce=True):
            self.executed.append((config.model, config.data.dataset, config.train.seed))
            self.fail(config)
            return run_experiment(config, dataset=dataset, announce=announce)

        monkeypatch.setattr(runner, "run_experiment", spy)


def result_files(out: Path) -> dict[str, int]:
    """Every result file under ``out`` with its modification time in ns."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("seed*.json") if not p.name.endswith(".failed.json")}


def test_plan_goes_seed_by_seed_within_a_dataset():
    plan = plan_runs(["a", "b"], ["d1", "d2"], [0, 1])
    assert plan[:4] == [RunSpec("a", "d1", 0), RunSpec("b", "d1", 0), RunSpec("a", "d1", 1), RunSpec("b", "d1", 1)]
    assert len(plan) == len(set(plan)) == 8 and {s.dataset for s in plan[4:]} == {"d2"}


def test_every_run_writes_one_result_and_a_second_call_runs_nothing(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    assert benchmark(data_dir, out, "--models", "sharedbottom,mmoe", "--seeds", "2", "--seed", "3") == 0
    files = result_files(out)
    assert sorted(files) == [f"tiny/{m}/seed{s}.json" for m in ("mmoe", "sharedbottom") for s in (3, 4)]
    payload = json.loads((out / "tiny" / "mmoe" / "seed4.json").read_text())
    assert payload["model"] == "mmoe" and payload["seed"] == 4 and payload["config"]["train"]["seed"] == 4
    assert payload["config"]["model_config"]["embed_dim"] == 4 and payload["config"]["model_config"]["expert_num"] == 2
    assert payload["steps"] == 2
    assert payload["history"][0]["valid"]["click"]["auc"] == payload["history"][0]["valid"]["click"]["auc"]  # not NaN
    assert payload["machine"]["torch"] and payload["run"]["wall_seconds"] > 0
    capsys.readouterr()

    spy = Spy(monkeypatch)
    assert benchmark(data_dir, out, "--models", "sharedbottom,mmoe", "--seeds", "2", "--seed", "3") == 0
    assert spy.executed == [] and result_files(out) == files
    assert "4 already done, 0 ran now, 0 failed" in capsys.readouterr().out


def test_an_interrupted_benchmark_resumes_with_the_runs_it_had_not_finished(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"

    def interrupt_third(config):
        if len(first.executed) == 3:
            raise KeyboardInterrupt

    first = Spy(monkeypatch, interrupt_third)
    assert benchmark(data_dir, out, "--models", "singletask,omoe", "--seeds", "2") == 130
    finished = result_files(out)
    assert sorted(finished) == ["tiny/omoe/seed0.json", "tiny/singletask/seed0.json"]
    assert "interrupted" in capsys.readouterr().out

    second = Spy(monkeypatch)
    assert benchmark(data_dir, out, "--models", "singletask,omoe", "--seeds", "2") == 0
    assert second.executed == [("singletask", "tiny", 1), ("omoe", "tiny", 1)]
    after = result_files(out)
    assert len(after) == 4 and all(after[name] == mtime for name, mtime in finished.items())


def test_a_killed_benchmark_process_resumes_without_rerunning_finished_runs(data_dir, tmp_path, monkeypatch):
    """SIGKILL (no clean-up at all) once the first result appears; the rerun does only the rest."""
    out = tmp_path / "runs"
    # Enough epochs that a run lasts far longer than the polling interval below.
    slow = ["--models", "sharedbottom,omoe", "--seeds", "1", "--max-steps", "60", "--epochs", "100", "--patience", "0"]
    command = [sys.executable, "-m", "mtreclib", "benchmark", "--datasets", "tiny", "--data-dir", str(data_dir),
               "--out", str(out), *FAST, *slow]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not result_files(out) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    finished = result_files(out)
    assert len(finished) == 1, finished

    spy = Spy(monkeypatch)
    assert main(command[3:]) == 0
    expected = [(m, "tiny", 0) for m in ("sharedbottom", "omoe") if f"tiny/{m}/seed0.json" not in finished]
    assert spy.executed == expected
    after = result_files(out)
    assert len(after) == 2 and all(after[name] == mtime for name, mtime in finished.items())
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".json"], "no temporary file left behind"


def test_a_failed_run_is_recorded_and_the_others_go_on(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"

    def fail_mmoe(config):
        if config.model == "mmoe":
            raise RuntimeError("out of memory\nsecond line")

    Spy(monkeypatch, fail_mmoe)
    assert benchmark(data_dir, out, "--models", "mmoe,ple", "--seeds", "2") == 1
    assert sorted(result_files(out)) == ["tiny/ple/seed0.json", "tiny/ple/seed1.json"]
    record = json.loads((out / "tiny" / "mmoe" / "seed1.failed.json").read_text())
    assert record["error"] == "RuntimeError: out of memory" and "fail_mmoe" in record["traceback"]
    printed = capsys.readouterr().out
    assert "2 failed" in printed and "failed: mmoe on tiny, seed 0: RuntimeError: out of memory" in printed

    retry = Spy(monkeypatch)
    assert benchmark(data_dir, out, "--models", "mmoe,ple", "--seeds", "2") == 0
    assert retry.executed == [("mmoe", "tiny", 0), ("mmoe", "tiny", 1)]
    assert not list(out.rglob("*.failed.json"))


def test_a_dataset_that_fails_to_load_fails_only_its_own_runs(data_dir, tmp_path, capsys):
    broken = tmp_path / "data"
    (broken / "broken").mkdir(parents=True)
    (broken / "broken" / "train.csv").write_text("not,the,layout\n1,2,3\n")
    (broken / "broken" / "test.csv").write_text("not,the,layout\n1,2,3\n")
    (broken / "tiny").symlink_to(data_dir / "tiny")
    out = tmp_path / "runs"
    status = main(["benchmark", "--datasets", "broken,tiny", "--data-dir", str(broken), "--out", str(out),
                   "--models", "sharedbottom", "--seeds", "1", *FAST])
    assert status == 1
    assert list(result_files(out)) == ["tiny/sharedbottom/seed0.json"]
    record = json.loads((out / "broken" / "sharedbottom" / "seed0.failed.json").read_text())
    assert "loading dataset 'broken' failed" in record["error"] and "train.csv" in record["error"]


def test_results_made_with_other_settings_are_refused_before_anything_runs(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    assert benchmark(data_dir, out, "--models", "sharedbottom", "--seeds", "1") == 0
    capsys.readouterr()
    spy = Spy(monkeypatch)
    assert benchmark(data_dir, out, "--models", "sharedbottom,mmoe", "--seeds", "1", "--lr", "0.01") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed0.json" in err and "train.lr" in err and spy.executed == []
    # Where and how visibly a run happens is not a different setting.
    assert benchmark(data_dir, out, "--models", "sharedbottom", "--seeds", "1", "--device", "cpu") == 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--models", "sharedbottom,nope"], "unknown model 'nope'"),
        (["--models", " , "], "models (--models) must name at least one value"),
        (["--seeds", "0"], "seeds (--seeds) must be at least 1"),
        (["--epochs", "0"], "epochs (--epochs) must be at least 1"),
        (["--datasets", "tiny,missing"], "dataset 'missing' not found"),
    ],
)
def test_bad_flags_stop_before_any_run_with_one_line(data_dir, tmp_path, monkeypatch, capsys, flags, message):
    spy = Spy(monkeypatch)
    status = main(["benchmark", "--datasets", "tiny", "--data-dir", str(data_dir), "--out", str(tmp_path / "runs"), *FAST, *flags])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert spy.executed == [] and not (tmp_path / "runs").exists()


def test_strategies_are_an_axis_of_the_grid_and_the_report_shows_them(data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    grid = ["--models", "mmoe", "--mtos", "ew,fixed", "--task-weights", "1,0.5", "--seeds", "1"]

    def fail_fixed(config):
        if config.train.mto == "fixed":
            raise RuntimeError("boom")

    Spy(monkeypatch, fail_fixed)
    assert benchmark(data_dir, out, *grid) == 1
    failure = json.loads((out / "tiny" / "mmoe+fixed" / "seed0.failed.json").read_text())
    assert failure["mto"] == "fixed" and "failed: mmoe with fixed on tiny, seed 0: RuntimeError: boom" in capsys.readouterr().out

    retry = Spy(monkeypatch)
    assert benchmark(data_dir, out, *grid) == 0
    assert retry.executed == [("mmoe", "tiny", 0)]
    assert sorted(result_files(out)) == ["tiny/mmoe+fixed/seed0.json", "tiny/mmoe/seed0.json"]
    fixed = RunRecord.read(out / "tiny" / "mmoe+fixed" / "seed0.json")
    assert fixed.mto == "fixed" and fixed.history[-1].task_weights == pytest.approx({"click": 1.0, "conversion": 0.5})
    assert not fixed.history[-1].complete  # --max-steps 2 ends the epoch early
    capsys.readouterr()

    assert main(["report", str(out)]) == 0
    report = out / "report"
    text = (report / "results.md").read_text()
    for label in ("mmoe + ew", "mmoe + fixed"):
        line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        assert line.rstrip(" |").endswith("| 1")  # one seed
    speed = [line for line in text[text.index("Training speed"):].splitlines() if line.startswith("| mmoe + ")]
    assert len(speed) == 2 and all("| n/a |" in line for line in speed)  # no epoch ran whole: no seconds per epoch
    assert "(weights_tiny.png)" in text and imread(report / "weights_tiny.png").shape[0] > 200
