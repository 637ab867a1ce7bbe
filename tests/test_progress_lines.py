"""Stumble 9 of issue 20: what a run tells a person while it runs: rows the epochs leave out, the
time left, evaluation in a log, and a terminal that is 0 columns wide."""

from __future__ import annotations

import fcntl
import io
import os
import struct
import termios

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtreclib.cli import main
from mtreclib.core import progress
from mtreclib.core.progress import Progress, draws_bars, duration
from mtreclib.data.loader import BatchLoader
from mtreclib.data.table import MultiTaskTable
from mtreclib.training import trainer


def table(n: int) -> MultiTaskTable:
    return MultiTaskTable(np.zeros((n, 1), np.int32), np.zeros((n, 0), np.float32), np.zeros((n, 1), np.uint8))


def test_the_rows_a_dropped_last_batch_leaves_out():
    assert BatchLoader(table(10), 4, drop_last=True).dropped_rows == 2  # 4 + 4, the last 2 dropped
    assert BatchLoader(table(10), 4).dropped_rows == 0
    assert BatchLoader(table(3), 4, drop_last=True).dropped_rows == 0  # a single short batch is kept


def test_a_large_dropped_share_is_one_warning_with_a_smaller_batch_size(capsys, monkeypatch):
    monkeypatch.setattr(trainer, "_warned", set())
    trainer.warn_dropped(BatchLoader(table(700), 512, drop_last=True))  # 188 of 700 left out
    trainer.warn_dropped(BatchLoader(table(700), 512, drop_last=True))  # the same again (a benchmark's next run): said once
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "every epoch leaves out 188 of the 700 training rows (27%)" in err
    assert "--batch-size 128 leaves out 60" in err  # 256 leaves out 188 too; 128: 700 = 5 * 128 + 60, 9%
    trainer.warn_dropped(BatchLoader(table(10_000), 512, drop_last=True))  # 272 of 10,000: 3%, no warning
    assert capsys.readouterr().err == ""


def test_duration_reads_as_a_person_says_it():
    assert [duration(s) for s in (0.4, 45, 720, 3 * 3600 + 300)] == ["0 s", "45 s", "12 min", "3 h 05 min"]


def test_plain_progress_lines_say_the_time_left(monkeypatch):
    clock = iter([100.0, 102.0, 102.0, 104.0, 104.0])  # start, then (update, line) twice
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    bar = Progress(10, "epoch 1", interval=0.0, stream=stream)
    bar.update()  # 1 of 10 in 2 s: 9 more at 2 s each
    bar.update()  # 2 of 10 in 4 s: 8 more
    assert stream.getvalue().splitlines() == ["epoch 1: 1/10 steps, 2 s, 0.5 steps/s, ETA 18 s", "epoch 1: 2/10 steps, 4 s, 0.5 steps/s, ETA 16 s"]


def test_the_time_left_counts_only_the_work_done_here(monkeypatch):
    clock = iter([0.0, 60.0, 60.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    Progress(10, "benchmark", interval=0.0, stream=stream, unit="run", initial=5).update()  # 5 runs done before, 1 in 60 s
    assert stream.getvalue().strip() == "benchmark: 6/10 runs, 60 s, 0.0 runs/s, ETA 4 min"


def test_a_terminal_of_0_columns_gets_plain_lines():
    master, worker = os.openpty()
    with os.fdopen(worker, "w") as terminal:
        fcntl.ioctl(worker, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        assert terminal.isatty() and os.get_terminal_size(worker).columns == 0
        assert not draws_bars(terminal)
        bar = Progress(3, "epoch 1", interval=0.0, stream=terminal)
        assert bar._bar is None  # plain lines, not an empty bar
        bar.update()
        terminal.flush()
        assert os.read(master, 1000).decode().startswith("epoch 1: 1/3 steps")
        fcntl.ioctl(worker, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        assert draws_bars(terminal)
    os.close(master)


@pytest.fixture
def small(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"a": rng.choice(list("abcdef"), 400), "y": rng.integers(0, 2, 400), "z": rng.integers(0, 2, 400)}), folder / "t.parquet")
    (folder / "dataset.yaml").write_text("source: t.parquet\nsplit: {method: random, test: 0.2, valid: 0.1, seed: 0}\ncategorical: [a]\nlabels: [y, z]\n")
    return tmp_path


def test_a_piped_run_warns_of_dropped_rows_says_when_it_evaluates_and_how_long_is_left(small, capsys, monkeypatch):
    monkeypatch.setattr(trainer, "_warned", set())
    argv = ["train", "--dataset", "small", "--data-dir", str(small), "--epochs", "3", "--batch-size", "256", "--embed-dim", "4",
            "--no-save", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if "leaves out" in line]
    # 292 training rows (as the seeded split cuts 400): one batch of 256 and 36 rows left out; 128 leaves 36 too, 64 leaves 36, 32 leaves 4
    assert warnings == [
        (
            "mtrec: warning: every epoch leaves out 36 of the 292 training rows (12%): the last batch, shorter than --batch-size 256, is dropped; "
            "a smaller --batch-size leaves out fewer (--batch-size 32 leaves out 4)"
        )
    ]
    assert sum(line == "epoch 1: evaluating on 35 validation rows" for line in err) == 1
    epochs = [line for line in err if line.startswith("epoch ") and " | loss " in line]
    assert "| 2 more epochs at most, about " in epochs[0] and "| 1 more epoch at most, about " in epochs[1]
    assert "more epoch" not in epochs[2]
