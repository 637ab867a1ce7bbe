"""What a recipe did: rows and label rates of each output, the recipe's own counts and notes, time.

Every recipe reports the same way: a line per output (a split), one per note, and a last line
with what was read, how fast, and what was written where. The kit counts the rows and the
label positives of everything written through ``Output`` and the bytes read through
``read_pieces``; the recipe adds what only it knows (rows left out, lines no row used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa


@dataclass
class Tally:
    """One output's rows and label positives, and the recipe's own counts of it.

    Attributes:
        rows: rows written.
        positives: per label column, the rows where it is 1.
        counts: the recipe's counts, by name (``dropped_conversions``, ``pages`` ...).
        details: phrases the report line of this output ends with.
    """

    rows: int = 0
    positives: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def add(self, table: pa.Table, labels: tuple[str, ...]) -> None:
        self.rows += table.num_rows
        for label in labels:
            if label in table.column_names:
                self.positives[label] = self.positives.get(label, 0) + int(np.count_nonzero(table.column(label).to_numpy()))

    def count(self, key: str, n: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + int(n)

    def line(self, name: str, labels: tuple[str, ...]) -> str:
        rates = ", ".join(f"{label} {_percent(self.positives.get(label, 0), self.rows)}" for label in labels) if self.rows else "no rows"
        return "; ".join([f"{name}: {self.rows:,} rows", *([rates] if rates else []), *self.details])


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.3g}%"


@dataclass
class Report:
    """A recipe run.

    Attributes:
        dataset: the dataset made; folder: where it went.
        labels: the label columns whose rates the lines give.
        outputs: the tally of each output written, by name (``train``; ``random_test``), in order.
        counts: the recipe's counts of the whole run (``users``).
        notes: lines after the outputs'.
        read_rows, read_bytes: rows parsed and their bytes of text (uncompressed).
        files: the files written, the specs last; seconds: wall time.
    """

    dataset: str
    folder: Path
    labels: tuple[str, ...] = ()
    outputs: dict[str, Tally] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    read_rows: int = 0
    read_bytes: int = 0
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def tally(self, output: str) -> Tally:
        return self.outputs.setdefault(output, Tally())

    def count(self, key: str, n: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + int(n)

    def total(self, key: str, outputs: tuple[str, ...] | None = None) -> int:
        """The sum of count ``key`` over ``outputs`` (default: all)."""
        return sum(t.counts.get(key, 0) for name, t in self.outputs.items() if outputs is None or name in outputs)

    def lines(self) -> list[str]:
        lines = [tally.line(name, self.labels) for name, tally in self.outputs.items()]
        lines += self.notes
        rate = f"{self.read_rows / self.seconds:,.0f}" if self.seconds else "-"
        lines.append(
            f"read {self.read_rows:,} rows ({self.read_bytes / 1e6:,.0f} MB of text) in {self.seconds:.1f} s ({rate} rows/s); "
            f"wrote {', '.join(self.files)} in {self.folder}/"
        )
        return lines
