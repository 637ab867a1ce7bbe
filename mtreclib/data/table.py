"""In-memory (or memory-mapped) rows of one split, and subsets of them without copies."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class MultiTaskTable:
    """The arrays batches are cut from.

    Attributes:
        categorical: (N, F) integer ids (int32 in storage).
        numerical: (N, M) float32 features.
        labels: (N, T) 0/1 labels (uint8 in storage).
        probabilities: (N, T) true probability of each label where known (synthetic data), so
            that the best achievable metrics (the oracle) can be reported.
        index: rows of the arrays that belong to this table, or None for all of them. Lets a
            random validation split share the arrays instead of copying them.
    """

    categorical: np.ndarray
    numerical: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray | None = None
    index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels) if self.index is None else len(self.index)

    def select(self, rows: slice | np.ndarray) -> MultiTaskTable:
        """The table of ``rows`` of this table: array views for a step-1 slice, an index otherwise."""
        if self.index is None and isinstance(rows, slice) and rows.step in (None, 1):
            return replace(
                self,
                categorical=self.categorical[rows],
                numerical=self.numerical[rows],
                labels=self.labels[rows],
                probabilities=None if self.probabilities is None else self.probabilities[rows],
            )
        base = np.arange(len(self.labels)) if self.index is None else self.index
        return replace(self, index=base[rows])

    def rows(self, array: np.ndarray) -> np.ndarray:
        """``array``'s rows that belong to this table (a copy only when there is an index)."""
        return array if self.index is None else array[self.index]


def split_validation(
    table: MultiTaskTable, fraction: float, *, mode: str = "tail", seed: int = 0
) -> tuple[MultiTaskTable, MultiTaskTable]:
    """Carve a validation split out of a training table, without copying its arrays.

    ``mode="tail"`` takes the last rows: the files are in log order and the test file is later in
    time, so the validation rows sit between training and test. ``mode="random"`` takes a seeded
    random subset.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    n = len(table)
    n_valid = int(round(n * fraction))
    if mode == "tail":
        return table.select(slice(0, n - n_valid)), table.select(slice(n - n_valid, n))
    if mode == "random":
        order = np.random.default_rng(seed).permutation(n)
        return table.select(np.sort(order[n_valid:])), table.select(np.sort(order[:n_valid]))
    raise ValueError(f"unknown validation split mode {mode!r}; expected 'tail' or 'random'")
