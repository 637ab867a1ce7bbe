"""Encoded rows (in memory or memory-mapped), and subsets of them without copies."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mtreclib.core.schema import Bag


@dataclass(frozen=True)
class MultiTaskTable:
    """Encoded rows: what the encoders make, caches hold and batches are cut from.

    Rows to score carry no labels; rows of a split carry every label the dataset has.

    Attributes:
        categorical: (N, F) integer ids (int32 in storage).
        numerical: (N, M) float32 features.
        labels: (N, T_all) 0/1 labels (uint8 in storage; float32 when a regression target is among
            them, which it holds after its transform), every label the dataset has; None for
            rows to score.
        probabilities: (N, T_all) true probability of each label where known (generated data),
            so that the best achievable metrics (the oracle) can be reported.
        index: rows of the arrays that belong to this table, or None for all of them. Lets a
            random validation split share the arrays instead of copying them.
        bags: one ``Bag`` per multi-valued field. A field kept in a side table holds the side
            table's rows (``side_rows`` picks each row's); while a chunk of rows is encoded for
            the cache, such a field is None (the cache joins it).
        side_rows: per multi-valued field, (N,) int32 each row's side-table row, or None for a
            field on the rows themselves; empty when no field is in a side table.
        weights: (N,) float32 sample weights, or None.
        group: (N,) int64 group ids (search page, session), or None.
        label_columns: which label columns are the trained tasks, in task order (None: all).
    """

    categorical: np.ndarray
    numerical: np.ndarray
    labels: np.ndarray | None
    probabilities: np.ndarray | None = None
    index: np.ndarray | None = None
    bags: tuple[Bag | None, ...] = ()
    side_rows: tuple[np.ndarray | None, ...] = ()
    weights: np.ndarray | None = None
    group: np.ndarray | None = None
    label_columns: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.categorical) if self.index is None else len(self.index)

    def with_tasks(self, columns: tuple[int, ...]) -> MultiTaskTable:
        """The same rows with ``columns`` of the labels as the tasks."""
        return replace(self, label_columns=tuple(columns))

    def side_row_of(self, k: int) -> np.ndarray | None:
        """(N,) each row's side-table row of multi-valued field ``k``, or None when the field is on the rows."""
        return self.side_rows[k] if self.side_rows else None

    def select(self, rows: slice | np.ndarray) -> MultiTaskTable:
        """The table of ``rows`` of this table: array views for a step-1 slice, an index otherwise."""
        if self.index is None and isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(len(self))

            def cut(array: np.ndarray | None) -> np.ndarray | None:
                return None if array is None else array[rows]

            # A side-table field keeps the side table whole and cuts the rows' pointers into it.
            bags = tuple(bag if self.side_row_of(k) is not None else bag.rows(start, stop) for k, bag in enumerate(self.bags))
            return replace(
                self,
                categorical=self.categorical[rows],
                numerical=self.numerical[rows],
                labels=cut(self.labels),
                probabilities=cut(self.probabilities),
                bags=bags,
                side_rows=tuple(cut(side) for side in self.side_rows),
                weights=cut(self.weights),
                group=cut(self.group),
            )
        base = np.arange(len(self)) if self.index is None else self.index
        return replace(self, index=base[rows])

    def rows(self, array: np.ndarray) -> np.ndarray:
        """``array``'s rows that belong to this table (a copy only when there is an index)."""
        return array if self.index is None else array[self.index]

    def bag_lengths(self, k: int) -> np.ndarray:
        """(N,) each row's number of values of multi-valued field ``k`` (through its side table)."""
        lengths = self.bags[k].lengths()
        side = self.side_row_of(k)
        return self.rows(lengths if side is None else lengths[side])

    def label_rows(self) -> np.ndarray:
        """(N, T) labels of the trained tasks for this table's rows."""
        if self.labels is None:
            raise ValueError("these rows have no labels (rows to score)")
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
