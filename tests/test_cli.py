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


TINY = ["--epochs", "1", "--max-steps", "2", "--embed-dim", "4", "--batch-size", "256", "--no-progress"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--save-dir", "{file}"], "--save-dir {file}: {file} is a file, not a folder"),
        (["--results", "{file}/out.json"], "--results {file}/out.json: {file} is a file, not a folder"),
        (["--results", "{folder}"], "--results {folder}: is a folder; expected a file name"),
    ],
)
def test_output_paths_are_checked_before_any_training(tmp_path, capsys, monkeypatch, flags, message):
    import mtreclib.training.experiment as experiment

    file = tmp_path / "a-file"
    file.write_text("x")
    (tmp_path / "folder").mkdir()
    names = {"file": str(file), "folder": str(tmp_path / "folder")}
    monkeypatch.setattr(experiment, "load_dataset", lambda *a, **k: pytest.fail("data was loaded before the outputs were checked"))
    assert main(["train", *TINY, *(f.format(**names) for f in flags)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(**names) in err and "Traceback" not in err


def test_a_run_says_what_it_runs_and_where_its_checkpoint_goes_and_writes_plain_progress_to_a_log(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mtreclib", "train", "--epochs", "1", "--max-steps", "3", "--embed-dim", "4", "--batch-size", "512",
         "--save-dir", str(tmp_path / "ck"), "--threads", "1"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "mtrec: mmoe on synthetic: tasks click, conversion; rows train 90,000, valid 10,000, test 40,000" in err
    assert "cpu, 1 threads" in err and f"run folder {tmp_path / 'ck' / 'synthetic_mmoe' / 'run-1'}" in err
    assert "\r" not in err and "\x1b[" not in err  # no bar redraws or cursor codes in a log file
    assert "epoch 1 | loss" in err
    assert f"checkpoint: {tmp_path / 'ck' / 'synthetic_mmoe' / 'run-1' / 'best.pt'}" in done.stdout


def test_plain_progress_lines_are_periodic_when_not_a_terminal():
    import io

    from mtreclib.core.progress import Progress

    stream = io.StringIO()
    with Progress(10, "epoch 1", interval=0.0, stream=stream) as bar:
        for _ in range(3):
            bar.update(postfix="loss 0.5")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("epoch 1: 3/10 steps") and "loss 0.5" in lines[-1]
    quiet = io.StringIO()
    with Progress(10, "epoch 1", interval=3600.0, stream=quiet) as bar:
        bar.update()
    assert quiet.getvalue() == ""


def test_version_and_models_with_settings(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and "mtrec (mtreclib)" in capsys.readouterr().out
    assert main(["models", "--settings"]) == 0
    out = capsys.readouterr().out
    assert "expert_num=8" in out and "critic_num=5" in out and "KDD 2018" in out


def test_generate_refuses_a_built_in_name_and_writes_a_folder_that_trains(tmp_path, capsys):
    assert main(["generate", "--data-dir", str(tmp_path), "--name", "synthetic", "--train-rows", "10", "--test-rows", "5"]) == 2
    assert "built-in dataset" in capsys.readouterr().err and not (tmp_path / "synthetic").exists()
    assert main(["generate", "--data-dir", str(tmp_path), "--train-rows", "600", "--test-rows", "200"]) == 0
    assert "mtrec train --dataset synthetic_csv" in capsys.readouterr().out
    assert main(["train", "--dataset", "synthetic_csv", "--data-dir", str(tmp_path), "--no-save", *TINY]) == 0


def test_the_command_line_a_config_file_and_the_python_api_agree(tmp_path):
    """One place defines each default: flags, flat and sectioned files and the API build the same object."""
    flat = tmp_path / "flat.yaml"
    flat.write_text("model: ple\nepochs: 3\nembed_dim: 16\nbottom-dims: [32, 16]\nexpert_num: 4\nno_progress: true\n")
    sections = tmp_path / "sections.yaml"
    sections.write_text("model: {name: ple, embed_dim: 16, bottom_dims: [32, 16], expert_num: 4}\ntrain: {epochs: 3}\nrun: {progress: false}\n")
    from mtreclib.cli import build_parser
    from mtreclib.commands.options import experiment_config

    parser = build_parser()
    by_flags = experiment_config(parser.parse_args(["train", "--model", "ple", "--epochs", "3", "--embed-dim", "16",
                                                    "--bottom-dims", "32,16", "--expert-num", "4", "--no-progress"]))  # fmt: skip
    by_file = experiment_config(parser.parse_args(["train", "--config", str(sections)]))
    by_flat_file = experiment_config(parser.parse_args(["train", "--config", str(flat)]))
    by_api = __import__("mtreclib.training.experiment", fromlist=["experiment"]).experiment(
        model="ple", epochs=3, embed_dim=16, bottom_dims=(32, 16), expert_num=4, progress=False
    )
    assert by_flags == by_file == by_flat_file == by_api
    assert by_api.train.lr == 1e-3 and by_api.model_config.tower_dims == (128, 64)  # untouched settings keep the one default
    overridden = experiment_config(parser.parse_args(["train", "--config", str(sections), "--epochs", "5"]))
    assert overridden.train.epochs == 5 and overridden.model_config.embed_dim == 16


def test_a_misspelled_config_key_names_the_file_and_the_known_keys(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("model: mmoe\nexpert_nums: 4\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: unknown setting 'expert_nums' (did you mean expert_num?)" in err and "embed_dim" in err


def test_tensorboard_logs_each_step_and_each_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main(["train", "--epochs", "2", "--max-steps", "6", "--embed-dim", "4", "--batch-size", "16384", "--no-progress",
                 "--save-dir", str(tmp_path / "ck"), "--tensorboard", str(tmp_path / "tb")]) == 0  # fmt: skip
    folder = tmp_path / "tb" / "synthetic_mmoe" / "run-1"
    events = EventAccumulator(str(folder))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_click", "train/loss_conversion", "valid/auc_click", "valid/logloss_conversion"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))
    assert [e.step for e in events.Scalars("valid/auc_click")] == [1, 2]
