"""The ``mtrec`` command and the original's ``main.py``, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtreclib.cli import main
from mtreclib.models import list_models

ROOT = Path(__file__).resolve().parents[1]


def test_models_lists_every_registered_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == list_models()
    assert "``" not in out  # plain text, no reST markup


def test_unknown_model_exits_2_with_one_line(capsys):
    assert main(["train", "--model", "nope", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'nope'" in err and "mmoe" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch-size", "0"], "batch_size (--batch-size) must be at least 2"),
        (["--epochs", "0"], "epochs (--epochs) must be at least 1"),
        (["--valid-fraction", "1.5"], "valid_fraction (--valid-fraction) must be below 1"),
        (["--embed-dim", "0"], "embed_dim (--embed-dim) must be at least 1"),
        (["--expert-num", "0"], "expert_num (--expert-num) must be at least 1"),
        (["--embed-dim", "eight"], "embed_dim (--embed-dim) must be an integer, got 'eight'"),
        (["--model", "aitm", "--expert-num", "4"], "model aitm has no setting 'expert_num'"),
        (["--device", "cuda:0"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"], "device"),
    ],
)
def test_bad_flags_exit_2_with_one_line(capsys, flags, message):
    assert main(["train", "--no-progress", "--no-save", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_train_on_the_real_sample_prints_metrics_and_writes_results(aliexpress_dir, tmp_path, capsys):
    results = tmp_path / "out" / "results.json"
    status = main(
        ["train", "--model", "mmoe", "--dataset", "AliExpress_NL", "--data-dir", str(aliexpress_dir), "--epochs", "1",
         "--valid-fraction", "0.2", "--save-dir", str(tmp_path / "ck"), "--results", str(results), "--no-progress"]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "click" in out and "conversion" in out and "AUC" in out
    payload = json.loads(results.read_text())
    assert payload["model"] == "mmoe" and payload["dataset"] == "AliExpress_NL" and payload["steps"] == 1
    assert (tmp_path / "ck" / "AliExpress_NL_mmoe" / "run-1" / "best.pt").is_file()
    assert payload["checkpoint"] == str(tmp_path / "ck" / "AliExpress_NL_mmoe" / "run-1" / "best.pt")
    assert f"checkpoint: {payload['checkpoint']}" in out


def test_bad_data_file_exits_2_naming_the_file(aliexpress_dir, capsys):
    train = aliexpress_dir / "AliExpress_NL" / "train.csv"
    lines = train.read_text().splitlines()
    lines[3] = lines[3][: lines[3].rindex(",")] + ",7"
    train.write_text("\n".join(lines) + "\n")
    status = main(["train", "--dataset", "AliExpress_NL", "--data-dir", str(aliexpress_dir), "--no-progress", "--no-save"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(train) in err and "line 4" in err and "conversion" in err


def test_console_script_and_module_form_run(tmp_path):
    for command in ([str(Path(sys.executable).parent / "mtrec"), "models"], [sys.executable, "-m", "mtreclib", "models"]):
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0 and "metaheac" in done.stdout, done.stderr


def test_originals_main_py_invocation_runs(aliexpress_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--model_name", "ple", "--num_expert", "4", "--dataset_name", "AliExpress_NL",
         "--dataset_path", str(aliexpress_dir), "--epoch", "1", "--device", "cpu", "--save_dir", str(tmp_path / "ck")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "conversion" in done.stdout
    log = (tmp_path / "ple_AliExpress_NL.txt").read_text()
    assert log.startswith("learning rate: 0.001") and "task 1, AUC" in log


def test_originals_main_py_reports_missing_data_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--device", "cpu"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "AliExpress_NL" in done.stderr


def test_precision_and_compile_flags_reach_the_training_configuration(monkeypatch, capsys):
    import mtreclib.commands.train as train_command

    class Captured(Exception):
        pass

    def capture(config, **kwargs):
        raise Captured(config)

    monkeypatch.setattr(train_command, "run_experiment", capture)
    with pytest.raises(Captured) as captured:
        main(["train", "--precision", "bf16", "--compile", "--no-progress", "--no-save"])
    config = captured.value.args[0]
    assert config.train.precision == "bf16" and config.train.compile is True
    with pytest.raises(Captured) as captured:
        main(["train", "--no-progress", "--no-save"])
    assert captured.value.args[0].train.precision == "fp32" and captured.value.args[0].train.compile is False
    capsys.readouterr()
    assert main(["train", "--precision", "fp16", "--no-progress"]) == 2
    assert "fp16" in capsys.readouterr().err
