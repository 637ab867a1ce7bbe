"""Batches cut by index: coverage, shuffling, and shards per rank."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mtreclib.core.schema import Bag
from mtreclib.data.loader import BatchLoader
from mtreclib.data.table import MultiTaskTable


def numbered_table(n: int) -> MultiTaskTable:
    """Row i has id i in its first field, so batches show which rows they hold."""
    categorical = np.stack([np.arange(n), np.arange(n) % 3], axis=1).astype(np.int32)
    numerical = np.arange(n, dtype=np.float32)[:, None].repeat(2, axis=1)
    labels = np.stack([np.arange(n) % 2, np.zeros(n)], axis=1).astype(np.uint8)
    return MultiTaskTable(categorical, numerical, labels)


def rows(loader: BatchLoader) -> list[int]:
    return [int(i) for batch in loader for i in batch.categorical[:, 0]]


def test_in_order_without_shuffle_and_types_for_the_model():
    loader = BatchLoader(numbered_table(10), 4)
    batches = list(loader)
    assert len(loader) == 3 and [b.size for b in batches] == [4, 4, 2]
    assert rows(loader) == list(range(10))
    batch = batches[0]
    assert batch.categorical.dtype == torch.int64 and batch.numerical.dtype == torch.float32 and batch.labels.dtype == torch.float32
    assert torch.equal(batch.numerical[:, 0], batch.categorical[:, 0].float())


def test_shuffle_is_a_permutation_per_epoch_fixed_by_the_seed():
    loader = BatchLoader(numbered_table(50), 8, shuffle=True, seed=1)
    first = rows(loader)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert rows(loader) == first
    loader.set_epoch(1)
    assert rows(loader) != first
    assert rows(BatchLoader(numbered_table(50), 8, shuffle=True, seed=1)) == first


def test_drop_last_drops_only_a_short_last_batch_of_several():
    assert [b.size for b in BatchLoader(numbered_table(10), 4, drop_last=True)] == [4, 4]
    assert [b.size for b in BatchLoader(numbered_table(3), 4, drop_last=True)] == [3]


def test_ranks_split_every_global_batch_without_overlap():
    table = numbered_table(37)
    single = [rows_of(b) for b in BatchLoader(table, 8, shuffle=True, seed=5)]
    shards = [[rows_of(b) for b in BatchLoader(table, 8, shuffle=True, seed=5, rank=r, world_size=3)] for r in range(3)]
    for step, global_batch in enumerate(single):
        parts = [shard[step] for shard in shards]
        assert sorted(sum(parts, [])) == sorted(global_batch)
        assert sum(parts, []) == global_batch


def rows_of(batch) -> list[int]:
    return [int(i) for i in batch.categorical[:, 0]]


def test_index_tables_and_task_selection():
    table = numbered_table(20).select(np.array([3, 7, 11])).with_tasks((1,))
    loader = BatchLoader(table, 2)
    assert rows(loader) == [3, 7, 11]
    assert next(iter(loader)).labels.shape == (2, 1)
    assert next(iter(loader)).labels[:, 0].tolist() == [0, 0]  # the second label column (the first is 1 on rows 3 and 7)


@pytest.mark.parametrize("as_array", [np.asarray, torch.as_tensor], ids=["numpy", "torch"])
def test_a_bag_cuts_and_gathers_rows_by_its_offsets(as_array):
    # Rows [5, 6], [], [7, 8, 9], each value weighing its position.
    bag = Bag(as_array(np.array([5, 6, 7, 8, 9])), as_array(np.array([0, 2, 2, 5])), as_array(np.arange(5, dtype=np.float32)))
    assert bag.row_num == 3 and bag.lengths().tolist() == [2, 0, 3] and bag.compact() is bag
    view = bag.rows(1, 3)
    assert view.values is bag.values and view.offsets.tolist() == [2, 2, 5]  # a view: the values whole, offsets absolute
    part = view.compact()
    assert part.values.tolist() == [7, 8, 9] and part.offsets.tolist() == [0, 0, 3] and part.weights.tolist() == [2, 3, 4]
    taken = bag.take(as_array(np.array([2, 0, 1])))
    assert taken.values.tolist() == [7, 8, 9, 5, 6] and taken.offsets.tolist() == [0, 3, 5, 5] and taken.weights.tolist() == [2, 3, 4, 0, 1]


def test_bags_from_lengths_and_joined_keep_each_rows_values():
    first = Bag.from_lengths(np.array([1, 2, 3]), np.array([1, 0, 2]))
    assert first.offsets.tolist() == [0, 1, 1, 3]
    joined = Bag.concat([first, Bag.from_lengths(np.array([4]), np.array([0, 1]))])
    assert joined.values.tolist() == [1, 2, 3, 4] and joined.offsets.tolist() == [0, 1, 1, 3, 3, 4]


def test_a_tables_rows_share_their_bags_values_and_batch_compact():
    table = replace(numbered_table(4), bags=(Bag(np.arange(6, dtype=np.int32), np.array([0, 1, 3, 3, 6])),))
    tail = table.select(slice(2, 4))
    assert np.shares_memory(tail.bags[0].values, table.bags[0].values) and tail.bags[0].offsets.tolist() == [3, 3, 6]
    batch = next(iter(BatchLoader(tail, 2)))
    assert batch.bags[0].values.tolist() == [3, 4, 5] and batch.bags[0].offsets.tolist() == [0, 0, 3]
    shuffled = next(iter(BatchLoader(table, 4, shuffle=True, seed=0)))
    expected = [list(range(int(a), int(b))) for a, b in zip(table.bags[0].offsets[:-1], table.bags[0].offsets[1:])]
    got = shuffled.bags[0]
    rows = shuffled.categorical[:, 0].tolist()
    assert [got.values[got.offsets[b] : got.offsets[b + 1]].tolist() for b in range(4)] == [expected[r] for r in rows]


def test_rows_to_score_have_no_labels_and_batch_like_any_table():
    table = replace(numbered_table(5), labels=None)
    batches = list(BatchLoader(table, 2))
    assert [b.size for b in batches] == [2, 2, 1] and all(b.labels is None for b in batches)
    assert rows(BatchLoader(table, 2)) == list(range(5))
