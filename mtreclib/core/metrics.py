"""Per-task AUC and log-loss (scikit-learn's, on float64 probabilities), and GAUC where rows have groups."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

from mtreclib.core.gauc import group_auc


def task_metrics(
    probabilities: np.ndarray, labels: np.ndarray, task_names: Sequence[str], groups: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """``{task: {"auc", "logloss"}}`` from (N, T) probabilities and (N, T) 0/1 labels; with (N,)
    ``groups`` also ``"gauc"`` and its ``"gauc_groups"`` used and ``"gauc_skipped"`` (``mtreclib.core.gauc``).

    AUC is NaN where a task's labels have only one class (no ranking to measure).
    """
    results = {}
    for t, name in enumerate(task_names):
        y, p = labels[:, t], np.asarray(probabilities[:, t], dtype=np.float64)
        auc = roc_auc_score(y, p) if 0 < y.sum() < len(y) else math.nan
        results[name] = {"auc": float(auc), "logloss": float(log_loss(y, p, labels=[0, 1]))}
        if groups is not None:
            grouped = group_auc(y, p, groups)
            results[name].update(gauc=grouped.value, gauc_groups=grouped.groups, gauc_skipped=grouped.skipped)
    return results


def logit_metrics(
    logits: torch.Tensor, labels: np.ndarray, task_names: Sequence[str], groups: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """``task_metrics`` of (N, T) logits."""
    return task_metrics(torch.sigmoid(logits.double()).numpy(), labels, task_names, groups)


def mean_auc(metrics: dict[str, dict[str, float]], key: str = "auc") -> float:
    """Mean AUC (``key="gauc"``: GAUC) over the tasks that have one (NaN if none has)."""
    aucs = [m[key] for m in metrics.values() if m.get(key) is not None and not math.isnan(m[key])]
    return float(np.mean(aucs)) if aucs else math.nan
