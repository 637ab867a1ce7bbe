"""Output paths: each command checks every path it will write by writing to it before the work,
and a write that fails anyway is one line naming the path, never a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import SMALL_SCHEMA, small_model

from mtreclib.cli import main
from mtreclib.core import atomic
from mtreclib.core.atomic import atomic_output, check_writable, write_errors
from mtreclib.core.errors import UserError
from mtreclib.serving.export import export_model


@pytest.fixture
def locked(tmp_path, monkeypatch) -> Path:
    """A folder this process cannot write in although ``os.access`` says it may, as root sees a
    read-only or special file system: a folder without write permission (``os.access`` made to
    say yes), or, for root whom permissions do not stop, a folder of /sys."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: True)
    try:
        (folder / "probe").touch()
    except PermissionError:
        yield folder
        folder.chmod(0o755)
        return
    (folder / "probe").unlink()
    folder.chmod(0o755)
    folder = Path("/sys/kernel")
    try:
        (folder / "mtrec-probe").touch()
    except OSError:
        yield folder
        return
    pytest.skip("no folder here that this process cannot write in")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mtrec: error: ") and "Traceback" not in err, err
    return err


def test_the_check_writes_rather_than_trusting_permission_bits(locked, tmp_path):
    with pytest.raises(UserError, match=f"^--results {locked}/r.json: cannot write in {locked} \\("):
        check_writable(locked / "r.json", "--results")
    with pytest.raises(UserError, match=f"^--out {locked}/a/b: cannot write in {locked} \\("):
        check_writable(locked / "a" / "b", "--out", folder=True)
    check_writable(tmp_path / "new" / "r.json", "--results")
    check_writable(tmp_path / "new", "--out", folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked"]  # the probe leaves nothing behind


@pytest.mark.parametrize(
    "command, flag",
    [
        (["train", "--epochs", "1", "--no-progress", "--no-save", "--results", "{}/r.json"], "--results"),
        (["train", "--epochs", "1", "--no-progress", "--no-save", "--tensorboard", "{}/tb"], "--tensorboard"),
        (["train", "--epochs", "1", "--no-progress", "--save-dir", "{}/runs"], "--save-dir"),
        (["train", "--epochs", "1", "--no-progress", "--no-save", "--cache-dir", "{}/cache"], "--cache-dir"),
        (["evaluate", "no-such-run", "--results", "{}/r.json"], "--results"),
        (["export", "no-such-run", "--output", "{}/m.onnx"], "--output"),
        (["benchmark", "--models", "mmoe", "--seeds", "1", "--out", "{}/runs"], "--out"),
        (["report", "no-such-runs", "--out", "{}/report"], "--out"),
        (["inspect", "synthetic", "--json", "{}/inspect.json"], "--json"),
        (["generate", "--data-dir", "{}"], "--data-dir"),
        (["preprocess", "--dataset", "CensusIncome", "--data-dir", "{}"], "--data-dir"),
    ],
)
def test_every_command_refuses_an_output_it_cannot_write_before_the_work(locked, command, flag, capsys):
    assert main([part.format(locked) for part in command]) == 2
    err = one_line_error(capsys)
    assert f"{flag} {locked}" in err and f"cannot write in {locked}" in err


def test_a_write_that_fails_late_is_one_line_naming_the_path(locked, tmp_path):
    with pytest.raises(UserError, match=f"^cannot write {locked}/x.json: (Permission denied|Operation not permitted)$"):
        atomic.write_json(locked / "x.json", {})
    denied = pytest.raises(UserError, match=f"^cannot write {locked}/sub/x.json: (Permission denied|Operation not permitted)$")
    with denied, atomic_output(locked / "sub" / "x.json") as temporary:
        temporary.write_text("{}")
    full = pytest.raises(UserError, match=f"^cannot write --tensorboard {tmp_path}: No space left on device$")
    with full, write_errors(tmp_path, flag="--tensorboard"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a full disk names no file
    with pytest.raises(FileNotFoundError), atomic_output(tmp_path / "out.json"):  # a file read, not written, is not the output's fault
        (tmp_path / "input.csv").read_text()


def test_export_blames_the_output_not_the_exporter_for_a_file_it_cannot_write(locked):
    with pytest.raises(UserError, match=f"^cannot write {locked}/m.pt: (Permission denied|Operation not permitted)$"):
        export_model(small_model("mmoe", SMALL_SCHEMA).eval(), locked / "m.pt", "torchscript")


def test_a_run_whose_results_cannot_be_written_at_the_end_says_so_in_one_line(locked, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(atomic, "_probe", lambda *args: None)  # as the permission check alone let it pass
    assert main(["train", "--epochs", "1", "--max-steps", "2", "--embed-dim", "4", "--batch-size", "16384", "--no-progress",
                 "--no-save", "--results", str(locked / "r.json")]) == 2  # fmt: skip
    err = capsys.readouterr().err  # the run's banner, then the error
    assert err.splitlines()[-1].startswith(f"mtrec: error: cannot write {locked}/r.json: ") and "Traceback" not in err, err
