"""Stumble 11 of issue 20: a file that is no checkpoint, a model its data cannot feed, a reader
that stops early and the help's defaults, each answered clearly."""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mtreclib.cli import build_parser, main


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_evaluating_a_data_file_says_it_is_no_checkpoint_and_gives_no_unsafe_advice(tmp_path, capsys):
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "some.parquet")
    assert main(["evaluate", str(tmp_path / "some.parquet")]) == 2
    err = one_line_error(capsys)
    assert "some.parquet: not a readable mtreclib checkpoint: not a file PyTorch saved (expected a run folder" in err
    torch.save({"x": np.arange(3)}, tmp_path / "other.pt")  # PyTorch's, but not loadable by the safe loader
    assert main(["evaluate", str(tmp_path / "other.pt")]) == 2
    err = one_line_error(capsys)
    assert "other.pt: not an mtreclib checkpoint: a PyTorch file holding more than tensors and plain values" in err
    assert "weights_only" not in err


def write_dataset(folder, roles: bool) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"u": rng.choice(list("abcdef"), 64), "i": rng.choice(list("xyz"), 64),
                             "y": rng.integers(0, 2, 64), "z": rng.integers(0, 2, 64)}), folder / "t.parquet")  # fmt: skip
    fields = "[{name: u, role: user}, {name: i, role: item}]" if roles else "[u, i]"
    (folder / "dataset.yaml").write_text(f"source: t.parquet\nsplit: {{method: random, test: 0.25}}\ncategorical: {fields}\nlabels: [y, z]\n")


def test_benchmarking_pepnet_on_data_without_roles_is_refused_before_any_run(tmp_path, capsys):
    write_dataset(tmp_path / "plain", roles=False)
    out = tmp_path / "bench"
    argv = ["benchmark", "--models", "mmoe,pepnet", "--datasets", "plain", "--data-dir", str(tmp_path), "--epochs", "1", "--seeds", "1",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert "model pepnet needs fields whose role is user or item or author" in err and "dataset plain" in err and "retry" not in err
    assert not list(out.rglob("*.json"))  # mmoe, first in the grid, did not run either


def test_the_role_check_passes_data_with_roles():
    from mtreclib.comparison.runner import check_roles
    from mtreclib.config.experiment import ExperimentConfig

    class Spec:
        path = None
        categorical = (type("Field", (), {"role": "item"})(),)

    experiment = ExperimentConfig(model="pepnet")
    check_roles([experiment], {experiment.data.dataset: Spec()})  # type: ignore[dict-item]
    Spec.categorical = (type("Field", (), {"role": "context"})(),)
    with pytest.raises(Exception, match="needs fields whose role is user or item or author"):
        check_roles([experiment], {experiment.data.dataset: Spec()})  # type: ignore[dict-item]


class _ClosedPipe(io.StringIO):
    """stdout whose reader went away after the first line (``| head -1``)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_inspect_writes_its_json_even_when_the_reader_of_its_output_stops_early(tmp_path, monkeypatch):
    write_dataset(tmp_path / "d", roles=True)
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    monkeypatch.setattr("sys.stderr", io.StringIO())  # main closes it on a broken pipe
    assert main(["inspect", "d", "--data-dir", str(tmp_path), "--json", str(tmp_path / "f.json"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "f.json").read_text())["dataset"] == "d"


def test_help_says_each_default_once():
    def parsers(parser: argparse.ArgumentParser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield from action.choices.items()

    twice = [(name, action.dest) for name, sub in parsers(build_parser()) for action in sub._actions if (action.help or "").count("(default:") > 1]
    assert twice == []
    tasks = next(a for a in dict(parsers(build_parser()))["train"]._actions if a.dest == "tasks")
    assert tasks.help.endswith("(default: the dataset's default tasks)")
