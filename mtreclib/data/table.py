"""In-memory (or memory-mapped) rows of one split, and subsets of them without copies."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class BagColumn:
    """The values of one multi-valued field for every row of a split, flat.

    Row ``i``'s values are ``values[offsets[i]:offsets[i + 1]]``; or, for a field kept in a side
    table, ``values[offsets[r]:offsets[r + 1]]`` with ``r = rows[i]``, its side-table row. A
    table's slice keeps ``values`` whole and slices ``offsets`` (which stay absolute positions
    into ``values``), or ``rows``.

    Attributes:
        values: (V,) int32 ids.
        offsets: (N + 1,) int64, non-decreasing (or (S + 1,) over the S side-table rows).
        weights: (V,) float32 per-value weights, or None.
        rows: (N,) int32 each row's side-table row, or None.
    """

    values: np.ndarray
    offsets: np.ndarray
    weights: np.ndarray | None = None
    rows: np.ndarray | None = None

    def select(self, rows: slice) -> BagColumn:
        """Rows ``rows`` (a step-1 slice) as a view."""
        if self.rows is not None:
            return replace(self, rows=self.rows[rows])
        start, stop, _ = rows.indices(len(self.offsets) - 1)
        return replace(self, offsets=self.offsets[start : stop + 1])

    def lengths(self) -> np.ndarray:
        """(N,) each row's number of values."""
        lengths = np.diff(self.offsets)
        return lengths if self.rows is None else lengths[self.rows]


@dataclass(frozen=True)
class MultiTaskTable:
    """The arrays batches are cut from.

    Attributes:
        categorical: (N, F) integer ids (int32 in storage).
        numerical: (N, M) float32 features.
        labels: (N, T_all) 0/1 labels (uint8 in storage), every label the dataset has.
        probabilities: (N, T_all) true probability of each label where known (synthetic data),
            so that the best achievable metrics (the oracle) can be reported.
        index: rows of the arrays that belong to this table, or None for all of them. Lets a
            random validation split share the arrays instead of copying them.
        bags: one ``BagColumn`` per multi-valued field.
        weights: (N,) float32 sample weights, or None.
        group: (N,) int64 group ids (search page, session), or None.
        label_columns: which label columns are the trained tasks, in task order (None: all).
    """

    categorical: np.ndarray
    numerical: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray | None = None
    index: np.ndarray | None = None
    bags: tuple[BagColumn, ...] = ()
    weights: np.ndarray | None = None
    group: np.ndarray | None = None
    label_columns: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.labels) if self.index is None else len(self.index)

    @property
    def task_columns(self) -> tuple[int, ...]:
        return tuple(range(self.labels.shape[1])) if self.label_columns is None else self.label_columns

    def with_tasks(self, columns: tuple[int, ...]) -> MultiTaskTable:
        """The same rows with ``columns`` of the labels as the tasks."""
        return replace(self, label_columns=tuple(columns))

    def select(self, rows: slice | np.ndarray) -> MultiTaskTable:
        """The table of ``rows`` of this table: array views for a step-1 slice, an index otherwise."""
        if self.index is None and isinstance(rows, slice) and rows.step in (None, 1):

            def cut(array: np.ndarray | None) -> np.ndarray | None:
                return None if array is None else array[rows]

            return replace(
                self,
                categorical=self.categorical[rows],
                numerical=self.numerical[rows],
                labels=self.labels[rows],
                probabilities=cut(self.probabilities),
                bags=tuple(bag.select(rows) for bag in self.bags),
                weights=cut(self.weights),
                group=cut(self.group),
            )
        base = np.arange(len(self.labels)) if self.index is None else self.index
        return replace(self, index=base[rows])

    def rows(self, array: np.ndarray) -> np.ndarray:
        """``array``'s rows that belong to this table (a copy only when there is an index)."""
        return array if self.index is None else array[self.index]

    def label_rows(self) -> np.ndarray:
        """(N, T) labels of the trained tasks for this table's rows."""
        labels = self.rows(self.labels)
        return labels if self.label_columns is None else labels[:, list(self.label_columns)]

    def probability_rows(self) -> np.ndarray | None:
        """(N, T) true probabilities of the trained tasks, where the data knows them."""
        if self.probabilities is None:
            return None
        p = self.rows(self.probabilities)
        return p if self.label_columns is None else p[:, list(self.label_columns)]


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
