"""A mistyped flag, command, model, strategy, dataset or spec key: refused with a "did you mean", never guessed."""

from __future__ import annotations

import argparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtreclib.cli import build_parser, main
from mtreclib.core.errors import did_you_mean


def test_did_you_mean_finds_the_close_word_and_nothing_for_an_unrelated_one():
    assert did_you_mean("pleh", ["mmoe", "ple", "pepnet"]) == " (did you mean ple?)"
    assert did_you_mean("zzzz", ["mmoe", "ple", "pepnet"]) == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--expert-nm", "3"], "unrecognized arguments: --expert-nm 3 (did you mean --expert-num?)"),
        (["train", "--expert-nm=3"], "unrecognized arguments: --expert-nm=3 (did you mean --expert-num?)"),
        # a prefix is not taken for the flag it starts: --epoch is not --epochs
        (["train", "--epoch", "1"], "unrecognized arguments: --epoch 1 (did you mean --epochs?)"),
        (["evaluate", "RUN", "--splt", "test"], "unrecognized arguments: --splt test (did you mean --split?)"),
        (["trian"], "invalid choice: 'trian' (choose from 'train', "),
        (["trian"], ") (did you mean train?)"),
    ],
)
def test_a_mistyped_flag_or_command_is_refused_with_the_close_one(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_no_parser_takes_abbreviations():
    def parsers(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    found = list(parsers(build_parser()))
    assert len(found) > 10 and not any(parser.allow_abbrev for parser in found)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "pleh"], "unknown model 'pleh' (did you mean ple?); known models: "),
        (["--mto", "pcgrd"], "unknown multi-task optimisation strategy 'pcgrd' (did you mean pcgrad?); known: "),
        (["--dataset", "synthetc"], "dataset 'synthetc' not found (did you mean synthetic?): "),
    ],
)
def test_a_mistyped_name_is_one_line_with_the_close_one(flags, message, capsys):
    assert main(["train", *flags, "--no-save", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_dataset_folder_name_is_suggested(tmp_path, capsys):
    (tmp_path / "myshop").mkdir()
    assert main(["train", "--dataset", "myshp", "--data-dir", str(tmp_path), "--no-save", "--no-progress"]) == 2
    assert "dataset 'myshp' not found (did you mean myshop?)" in capsys.readouterr().err


def test_a_mistyped_spec_key_is_named_with_the_close_one(tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(pa.table({"a": ["x", "y"], "y": [0, 1]}), folder / "t.parquet")
    (folder / "dataset.yaml").write_text("train: t.parquet\ntest: t.parquet\ncategoricals: [a]\nlabels: [y]\n")
    assert main(["train", "--dataset", "d", "--data-dir", str(tmp_path), "--no-save", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{folder / 'dataset.yaml'}: categoricals: not a dataset spec key (did you mean categorical?); known: " in err
