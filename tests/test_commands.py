"""Every command's options are typed once: settings classes generate every flag of every command,
one flag name means one thing with one default everywhere, and which settings may differ on
resume or between the runs of one table is a marker on the setting, read by one comparison."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from mtreclib.cli import COMMANDS, build_parser
from mtreclib.config.compare import differences
from mtreclib.config.experiment import RESUME, TABLE, DataConfig, ExperimentConfig, RunConfig, TrainConfig
from mtreclib.config.flags import is_run_default
from mtreclib.config.resolve import with_changes
from mtreclib.core.settings import meta_of

COMMANDS_DIR = Path(__file__).resolve().parents[1] / "mtreclib" / "commands"
# Commands whose flags are still declared by hand: none left.
HAND_WRITTEN: set[str] = set()
# A flag that several commands take with different meanings on purpose: --dataset is the data a
# command reads or writes (train's and evaluate's any dataset, generate's built-in preset,
# preprocess's recipe); --out is the folder a command writes (benchmark's runs, report's tables).
PER_COMMAND = {"--dataset", "--out"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flags_of(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_no_command_declares_a_flag_by_hand():
    for path in sorted(COMMANDS_DIR.glob("*.py")):
        if path.stem in HAND_WRITTEN:
            continue
        assert "add_argument(" not in path.read_text(), f"{path.name} declares a flag by hand; declare a setting instead"


@pytest.mark.parametrize("name", [command.NAME for command in COMMANDS if command.NAME not in HAND_WRITTEN])
def test_every_flag_of_every_command_is_generated_from_a_setting(name, capsys):
    parser = subcommands()[name]
    for action in flags_of(parser):
        assert hasattr(action, "setting_field"), f"mtrec {name} {action.option_strings or action.dest} is not generated"
    with pytest.raises(SystemExit):
        build_parser().parse_args([name, "--help"])
    shown = capsys.readouterr().out
    for action in flags_of(parser):
        label = action.option_strings[0] if action.option_strings else action.metavar
        assert label in shown


def test_one_flag_name_means_one_thing_with_one_default_everywhere():
    seen: dict[str, tuple[str, object, object]] = {}
    for name, parser in subcommands().items():
        if name in HAND_WRITTEN:
            continue
        for action in flags_of(parser):
            field = action.setting_field
            for flag in action.option_strings:
                if flag in PER_COMMAND:
                    continue
                default = "the run's" if is_run_default(field) else field.default
                if flag in seen:
                    first, meta, first_default = seen[flag]
                    assert meta_of(field) is meta, f"{flag} of mtrec {name} is declared apart from mtrec {first}'s"
                    assert default in (first_default, "the run's") or first_default == "the run's", f"{flag}: two defaults"
                else:
                    seen[flag] = (name, meta_of(field), default)
    for flag in ("--device", "--threads", "--data-dir", "--no-progress"):
        assert flag in seen
    assert seen["--device"][2] == "auto"


@pytest.mark.parametrize("command", [["train"], ["evaluate", "RUN"], ["predict", "RUN", "--input", "a.csv", "--output", "b.csv"]])
def test_device_threads_data_dir_and_progress_parse_alike_for_each_command(command):
    args = build_parser().parse_args([*command, "--device", "cpu", "--threads", "1", "--no-progress"])
    assert (args.device, args.threads, args.progress) == ("cpu", "1", False)


def test_list_flags_may_be_repeated_or_comma_separated():
    args = build_parser().parse_args(["predict", "RUN", "--input", "a", "--output", "b", "--id-column", "a,b", "--id-column", "c"])
    from mtreclib.commands.predict import PredictOptions
    from mtreclib.config.flags import settings_from

    options = settings_from(PredictOptions, args)
    assert options.id_columns == ("a", "b", "c") and options.batch_size is None and options.header is None and options.device == "auto"
    assert build_parser().parse_args(["train", "--resume"]).resume == "last"
    assert build_parser().parse_args(["train", "--resume", "chkpt/x/run-2"]).resume == "chkpt/x/run-2"


@pytest.mark.parametrize("name", ["benchmark", "tune"])
def test_commands_that_run_many_trainings_offer_no_resume_of_one_run(name):
    """A benchmark resumes by skipping finished runs, a study by its storage; --resume RUN would be ignored."""
    assert "--resume" not in subcommands()[name].format_help()


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--train-rows", "0"], "train_rows (--train-rows) must be at least 1, got 0"),
        (["evaluate", "RUN", "--split", "dev"], "split (--split) must be one of test, valid, train, got 'dev'"),
        (["evaluate", "RUN", "--threads", "0"], "threads (--threads) must be at least 1, got 0"),
        (["export", "RUN", "--output", "m.onnx", "--format", "keras"], "format (--format) must be one of onnx, torchscript, pt2"),
        (["benchmark", "--seeds", "0"], "seeds (--seeds) must be at least 1, got 0"),
    ],
)
def test_a_bad_value_of_any_command_is_one_line_from_its_setting(args, message, capsys, tmp_path, monkeypatch):
    from mtreclib.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_the_markers_say_what_may_differ_on_resume_and_in_a_table():
    marked = {
        context: sorted(
            f"{section}.{field.name}"
            for section, cls in (("data", DataConfig), ("train", TrainConfig), ("run", RunConfig))
            for field in cls.__dataclass_fields__.values()
            if context in meta_of(field).may_differ
        )
        for context in (RESUME, TABLE)
    }
    where = ["data.data_dir", "data.cache_dir", *(f"run.{key}" for key in RunConfig.keys()), "train.threads", "train.release_memory"]
    assert marked[TABLE] == sorted(where)  # where and how visibly a run happens
    assert marked[RESUME] == sorted([*where, "train.epochs", "train.max_steps"])  # and, on resume, how long


def test_one_comparison_reads_the_markers():
    base = ExperimentConfig()
    longer = with_changes(base, epochs=80, device="cpu", threads=2, data_dir="/elsewhere")
    assert differences(base, longer, RESUME) == []
    assert differences(base, longer, TABLE) == ["train.epochs was 50, now 80"]
    other = with_changes(base, lr=0.01, expert_num=4)
    assert differences(base.to_dict(), other, RESUME) == [
        "model_config.expert_num was 8, now 4",
        "train.lr was 0.001, now 0.01",
    ]


def test_the_readmes_command_reference_names_every_generated_flag():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## Command reference\n\n```\n(.*?)```", text, re.S).group(1)
    lines = {name: "" for name in subcommands()}
    current = None
    for line in block.splitlines():
        match = re.match(r"mtrec (\w+)", line)
        current = match.group(1) if match else current
        if current in lines:
            lines[current] += line
    for name in ("evaluate", "predict", "export", "inspect", "preprocess", "generate", "report", "models"):
        for action in flags_of(subcommands()[name]):
            for flag in action.option_strings:
                assert flag in lines[name], f"README's command reference: mtrec {name} lacks {flag}"
