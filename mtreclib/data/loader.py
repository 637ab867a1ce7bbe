"""Batches cut straight from a table's arrays: no per-sample ``__getitem__``, no collate."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from mtreclib.core.schema import Bag, Batch
from mtreclib.data.table import MultiTaskTable


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory (read-only memory maps included)."""
    with warnings.catch_warnings():
        # Read-only memory maps are never written through the tensor.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _as_tensors(bag: Bag) -> Bag:
    return Bag(_as_tensor(bag.values), _as_tensor(bag.offsets), None if bag.weights is None else _as_tensor(bag.weights))


class BatchLoader:
    """Mini-batches of a table, gathered by index from whole-array tensors.

    Args:
        table: the rows to batch (its ``label_columns`` are the labels batches carry).
        batch_size: rows per global batch. With ``world_size > 1`` each rank receives its
            ``1 / world_size`` share of every global batch, so that one epoch covers every row
            exactly once over all ranks and results compare with a single process.
        shuffle: draw a new permutation every epoch (``set_epoch``), the same one on every rank.
        drop_last: drop a last batch smaller than ``batch_size`` when the epoch has other batches
            (BatchNorm cannot train on one row, and a short batch weighs as much as a full one).
        seed: seeds the permutations.
        device: where batches go.
        rank, world_size: this process's share of every global batch.
        sample_weights: carry the table's sample weights (when it has them) in the batches.
    """

    def __init__(
        self,
        table: MultiTaskTable,
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        sample_weights: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.table = table
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.device = torch.device(device)
        self.rank = rank
        self.world_size = world_size
        self._categorical = _as_tensor(table.categorical)
        self._numerical = _as_tensor(table.numerical)
        labels = table.labels
        if labels is not None and table.label_columns is not None and table.label_columns != tuple(range(labels.shape[1])):
            labels = np.ascontiguousarray(labels[:, list(table.label_columns)])
        self._labels = None if labels is None else _as_tensor(labels)
        self._bags = [_as_tensors(bag) for bag in table.bags]
        self._side_rows = [None if table.side_row_of(k) is None else _as_tensor(table.side_row_of(k)) for k in range(len(table.bags))]
        self._weights = _as_tensor(table.weights) if sample_weights and table.weights is not None else None
        self._group = None if table.group is None else _as_tensor(table.group)
        self._index = None if table.index is None else torch.from_numpy(table.index)
        self._pin = self.device.type == "cuda"

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of ``epoch`` (identical on every rank for the same seed)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.table)
        full, rest = divmod(n, self.batch_size)
        return full if (self.drop_last and full > 0) else full + (rest > 0)

    @property
    def dropped_rows(self) -> int:
        """Rows left out of every epoch: the last, shorter batch under ``drop_last``."""
        full, rest = divmod(len(self.table), self.batch_size)
        return rest if (self.drop_last and full > 0) else 0

    def _order(self) -> torch.Tensor | None:
        if not self.shuffle:
            return None
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.table), generator=generator)

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        n = len(self.table)
        for number in range(len(self)):
            start = number * self.batch_size
            stop = min(start + self.batch_size, n)
            # This rank's share of the global batch.
            size = stop - start
            start, stop = start + size * self.rank // self.world_size, start + size * (self.rank + 1) // self.world_size
            yield self._gather(start, stop, order)

    def _bag(self, k: int, start: int, stop: int, rows: torch.Tensor | None) -> Bag:
        """Field ``k``'s bag of rows ``start:stop`` (or of ``rows``), compact."""
        bag, side = self._bags[k], self._side_rows[k]
        if side is not None:  # each row's values are its side-table row's
            return bag.take((side[start:stop] if rows is None else side[rows]).long())
        return bag.slice(start, stop) if rows is None else bag.take(rows)

    def _gather(self, start: int, stop: int, order: torch.Tensor | None) -> Batch:
        sources = [self._categorical, self._numerical]
        optional = [t for t in (self._labels, self._weights, self._group) if t is not None]
        sources += optional
        rows = None
        if order is not None or self._index is not None:
            rows = order[start:stop] if order is not None else torch.arange(start, stop)
            if self._index is not None:
                rows = self._index[rows]
        if self._pin:
            # Rows go straight into page-locked memory, so the copy to the GPU runs asynchronously;
            # the caching host allocator reuses a buffer only once its copy has finished.
            parts = [torch.empty((stop - start, *t.shape[1:]), dtype=t.dtype, pin_memory=True) for t in sources]
            for source, part in zip(sources, parts):
                if rows is None:
                    part.copy_(source[start:stop])
                else:
                    torch.index_select(source, 0, rows, out=part)
        elif rows is None:
            parts = [t[start:stop] for t in sources]
        else:
            parts = [t.index_select(0, rows) for t in sources]
        bags = tuple(self._bag(k, start, stop, rows).to(self.device, self._pin) for k in range(len(self._bags)))
        # Narrow types cross to the device; widening happens there.
        moved = [p.to(self.device, non_blocking=self._pin) for p in parts]
        categorical, numerical = moved[:2]
        extra = iter(moved[2:])
        labels = next(extra).float() if self._labels is not None else None
        weights = next(extra).float() if self._weights is not None else None
        group = next(extra).long() if self._group is not None else None
        return Batch(categorical.long(), numerical.float(), labels, bags, weights, group)
