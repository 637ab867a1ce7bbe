"""Shared by the data benchmarks: run a command in a fresh process, return its wall time and peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """One finished child process.

    Attributes:
        seconds: wall time from start to exit.
        peak_rss_mb: the child's largest resident set (MiB, from ``wait4``), file-backed pages of
            memory maps included.
        stdout: what it printed.
    """

    seconds: float
    peak_rss_mb: float
    stdout: str


def measure(command: list[str], *, env: dict | None = None) -> Run:
    """Run ``command`` alone in a new process and measure it; raise if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-3000:]}")
    return Run(seconds, usage.ru_maxrss / 1024, stdout)  # ru_maxrss is in KiB on Linux


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def save(path: str | None, payload: dict) -> None:
    print(json.dumps(payload, indent=2))
    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
