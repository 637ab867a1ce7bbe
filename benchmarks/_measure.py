"""Shared by the data benchmarks: run a command in a fresh process, return its wall time and peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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


# Runs the command from a small process and reports the command's own wait4 figures. Spawned
# straight from the benchmark, a child's ru_maxrss would start at the benchmark's own peak: Linux
# carries the high-water mark of the address space a process replaces on exec into ru_maxrss.
_TRAMPOLINE = r"""
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as handle:
    json.dump({"seconds": seconds, "maxrss_kib": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}, handle)
"""


def measure(command: list[str], *, env: dict | None = None) -> Run:
    """Run ``command`` alone in a new process and measure it; raise if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as figures:
        done = subprocess.run(
            [sys.executable, "-c", _TRAMPOLINE, figures.name, *command],
            stdout=out,
            stderr=err,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        result = json.loads(figures.read() or "{}")
    if done.returncode != 0 or result.get("code") != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return Run(result["seconds"], result["maxrss_kib"] / 1024, stdout)  # ru_maxrss is in KiB on Linux


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def save(path: str | None, payload: dict) -> None:
    print(json.dumps(payload, indent=2))
    if path:
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
