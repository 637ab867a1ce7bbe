"""The task losses' precision: float32 for float32 and bfloat16 logits, the logits' own when wider."""

from __future__ import annotations

import math

import pytest
import torch

from mtreclib.models import multitask_bce, task_bce

LOGITS = [[0.3, -2.0], [1.7, 0.05], [-0.6, 4.25]]
LABELS = [[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
WEIGHTS = [0.5, 2.0, 1.25]


def _bce(x: float, y: float) -> float:
    """-y log sigmoid(x) - (1 - y) log(1 - sigmoid(x)), written stably, in Python's double."""
    return max(x, 0.0) - x * y + math.log1p(math.exp(-abs(x)))


def test_float64_logits_give_a_float64_loss_equal_to_the_hand_computation():
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    labels = torch.tensor(LABELS)  # float32, as batches carry them: 0 and 1 are exact
    weights = torch.tensor(WEIGHTS)  # exact in float32 too
    per_task = task_bce(logits, labels)
    assert per_task.dtype == torch.float64
    for t in range(2):
        expected = sum(_bce(LOGITS[b][t], LABELS[b][t]) for b in range(3)) / 3
        assert per_task[t].item() == pytest.approx(expected, rel=1e-15, abs=0)
    weighted = task_bce(logits, labels, weights)
    for t in range(2):
        expected = sum(WEIGHTS[b] * _bce(LOGITS[b][t], LABELS[b][t]) for b in range(3)) / sum(WEIGHTS)
        assert weighted[t].item() == pytest.approx(expected, rel=1e-15, abs=0)
    mean = sum(_bce(LOGITS[b][t], LABELS[b][t]) for b in range(3) for t in range(2)) / 6
    assert multitask_bce(logits, labels).item() == pytest.approx(mean, rel=1e-15, abs=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_narrower_logits_give_a_float32_loss(dtype):
    logits = torch.tensor(LOGITS).to(dtype)
    labels = torch.tensor(LABELS)
    assert task_bce(logits, labels).dtype == torch.float32
    assert task_bce(logits, labels, torch.tensor(WEIGHTS)).dtype == torch.float32
    assert multitask_bce(logits, labels).dtype == torch.float32
    # The same numbers as float32 logits rounded to that dtype.
    torch.testing.assert_close(task_bce(logits, labels), task_bce(logits.float(), labels), rtol=0, atol=0)
