"""GAUC: the equation on a hand case, scikit-learn's AUC per group, the results, evaluate, the report
table, ``--gauc-group`` and ``--select-metric gauc``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mtreclib.core.gauc import group_auc
from mtreclib.core.metrics import task_metrics


def sklearn_gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[float, int, int]:
    """The definition, one group at a time: scikit-learn's AUC per group with both classes, weighted by its rows."""
    total = weight = used = skipped = 0
    for group in np.unique(groups):
        rows = groups == group
        if 0 < labels[rows].sum() < rows.sum():
            total += rows.sum() * roc_auc_score(labels[rows], scores[rows])
            weight += rows.sum()
            used += 1
        else:
            skipped += 1
    return (total / weight if weight else math.nan), used, skipped


def test_gauc_of_a_hand_case_weighs_groups_by_rows_and_skips_a_one_class_group():
    # Group 7: positive 0.9 against negatives 0.5 and 0.95: one pair of two ranked right, AUC 1/2, 3 rows.
    # Group -3: positives 0.8, 0.3 against negatives 0.3, 0.1: pairs 1 + 1 + 1/2 (a tie) + 1 of 4, AUC 7/8, 4 rows.
    # Group 10^12: negatives only, left out. GAUC = (3 * 1/2 + 4 * 7/8) / 7 = 5/7. Rows interleaved on purpose.
    groups = np.array([7, -3, 10**12, 7, -3, -3, 10**12, 7, -3])
    labels = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.5, 0.3, 0.3, 0.2, 0.95, 0.1])
    result = group_auc(labels, scores, groups)
    assert result.value == pytest.approx(5 / 7, abs=1e-15)
    assert (result.groups, result.skipped) == (2, 1)
    assert roc_auc_score(labels[groups == 7], scores[groups == 7]) == 0.5
    assert roc_auc_score(labels[groups == -3], scores[groups == -3]) == 7 / 8
    assert sklearn_gauc(labels, scores, groups) == (pytest.approx(5 / 7, abs=1e-15), 2, 1)


@pytest.mark.parametrize("seed", range(4))
def test_gauc_equals_scikit_learns_auc_group_by_group_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = 5000
    groups = rng.integers(-50, 1000, n) * 7919  # ~5 rows a group: some of one row, some of one class; unsorted ids
    labels = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(np.uint8)
    scores = rng.random(n) if seed % 2 else np.round(rng.random(n), 1)  # even seeds: many ties within a group
    result = group_auc(labels, scores, groups)
    value, used, skipped = sklearn_gauc(labels, scores, groups)
    assert result.value == pytest.approx(value, abs=1e-12)
    assert (result.groups, result.skipped) == (used, skipped) and skipped > 0


def test_gauc_without_a_group_of_both_classes_is_nan_and_says_so():
    result = group_auc(np.array([1, 1, 0]), np.array([0.2, 0.4, 0.1]), np.array([1, 1, 2]))
    assert math.isnan(result.value) and (result.groups, result.skipped) == (0, 2)


def test_task_metrics_add_gauc_per_task_only_with_groups():
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    probabilities = np.array([[0.9, 0.2], [0.1, 0.7], [0.4, 0.3], [0.6, 0.1]])
    plain = task_metrics(probabilities, labels, ("a", "b"))
    assert "gauc" not in plain["a"]
    grouped = task_metrics(probabilities, labels, ("a", "b"), np.array([1, 1, 2, 2]))
    # a: group 1 ranks its pair right (1), group 2 wrong (0), 2 rows each: 1/2. b: only group 1 has both classes.
    assert grouped["a"]["gauc"] == 0.5 and (grouped["a"]["gauc_groups"], grouped["a"]["gauc_skipped"]) == (2, 0)
    assert grouped["b"]["gauc"] == 1.0 and (grouped["b"]["gauc_groups"], grouped["b"]["gauc_skipped"]) == (1, 1)
    assert grouped["a"]["auc"] == plain["a"]["auc"]
