"""Progress a person can read: a bar on a terminal, plain periodic lines in a log file.

tqdm redraws its bar with carriage returns and cursor codes, which fill a log file with noise
when the output is piped. When stderr is not a terminal, ``Progress`` prints one plain line
every ``interval`` seconds instead, with the same facts and the time left (ETA). A terminal
that reports 0 columns (a pseudo-terminal nobody sized, as some container runners open) would
get an empty bar: it gets the plain lines too.
"""

from __future__ import annotations

import io
import os
import sys
import time
from typing import TextIO

from tqdm.auto import tqdm

PLAIN_INTERVAL = 30.0


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def draws_bars(stream: TextIO | None = None) -> bool:
    """A terminal a bar can be drawn on: not a pipe or file, and not 0 columns wide."""
    stream = stream or sys.stderr
    if not is_terminal(stream):
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return True  # a terminal that does not say its size: tqdm's default width


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``: a time to wait, rounded as a person says it."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Progress over ``total`` units of work.

    Args:
        total: units (steps, bytes, runs) or None when unknown.
        desc: what is being done, e.g. ``epoch 3``.
        enabled: False shows nothing.
        unit: the unit's name, for the plain lines.
        interval: seconds between plain lines.
        stream: where to write (stderr by default).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        enabled: bool = True,
        unit: str = "step",
        interval: float = PLAIN_INTERVAL,
        stream: TextIO | None = None,
        leave: bool = False,
        unit_scale: bool = False,
        initial: int = 0,
    ):
        self.total = total
        self.desc = desc
        self.enabled = enabled
        self.unit = unit
        self.interval = interval
        self.stream = stream or sys.stderr
        self.count = initial
        self._initial = initial  # done before this started (a benchmark's finished runs): no part of the rate
        self.postfix = ""
        self._start = time.perf_counter()
        self._last = self._start
        self._bar = None
        if enabled and draws_bars(self.stream):
            self._bar = tqdm(
                total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=leave, dynamic_ncols=True,
                mininterval=1.0, file=self.stream, initial=initial, smoothing=0 if unit == "run" else 0.3,
            )

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.count += n
        if postfix is not None:
            self.postfix = postfix
        if self._bar is not None:
            self._bar.update(n)
            if postfix is not None:
                self._bar.set_postfix_str(postfix, refresh=False)
        elif self.enabled:
            now = time.perf_counter()
            if now - self._last >= self.interval:
                self._last = now
                self._line()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self._start
        done = f"{self.count:,}" + (f"/{self.total:,}" if self.total else "")
        here = self.count - self._initial
        rate = f"{here / elapsed:,.1f} {self.unit}s/s" if elapsed > 0 else ""
        left = f"ETA {duration((self.total - self.count) * elapsed / here)}" if self.total and here > 0 and elapsed > 0 else ""
        parts = [f"{self.desc}: {done} {self.unit}s", f"{elapsed:,.0f} s", rate, left]
        if self.postfix:
            parts.append(self.postfix)
        print(", ".join(p for p in parts if p), file=self.stream, flush=True)

    def write(self, line: str) -> None:
        """A line of its own (a finished run), above the bar on a terminal."""
        if self.enabled:
            note(line, self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def note(line: str, stream: TextIO | None = None) -> None:
    """Print ``line`` to stderr (above any progress bar on a terminal)."""
    stream = stream or sys.stderr
    if is_terminal(stream):
        tqdm.write(line, file=stream)
    else:
        print(line, file=stream, flush=True)
