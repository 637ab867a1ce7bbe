"""Per-task metrics (scikit-learn's, in float64), by the task's type.

A binary task has AUC and log-loss of its probabilities, and GAUC where rows have groups
(``mtreclib.core.gauc``); a regression task has RMSE and MAE of its predictions, on the target's
scale as the model learns it (after the spec's ``transform``: a ``log1p`` target's RMSE is in
log1p units).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import log_loss, mean_absolute_error, roc_auc_score, root_mean_squared_error

from mtreclib.core.gauc import group_auc


def task_metrics(
    probabilities: np.ndarray, labels: np.ndarray, task_names: Sequence[str], task_types: Sequence[str] = (), *, groups: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """``{task: {"auc", "logloss"}}`` for a binary task, ``{task: {"rmse", "mae"}}`` for a regression one.

    (N, T) probabilities (a regression task's column: its predictions) and (N, T) labels (0/1, or
    the targets); ``task_types``: per task ``"binary"`` or ``"regression"``, empty for all binary.
    With (N,) ``groups`` a binary task also has ``"gauc"``, the groups it used (``"gauc_groups"``)
    and those it left out (``"gauc_skipped"``).
    AUC is NaN where a task's labels have only one class (no ranking to measure).
    """
    results = {}
    for t, name in enumerate(task_names):
        y, p = labels[:, t], np.asarray(probabilities[:, t], dtype=np.float64)
        if task_types and task_types[t] == "regression":
            y = np.asarray(y, dtype=np.float64)
            results[name] = {"rmse": float(root_mean_squared_error(y, p)), "mae": float(mean_absolute_error(y, p))}
            continue
        auc = roc_auc_score(y, p) if 0 < y.sum() < len(y) else math.nan
        results[name] = {"auc": float(auc), "logloss": float(log_loss(y, p, labels=[0, 1]))}
        if groups is not None:
            grouped = group_auc(y, p, groups)
            results[name].update(gauc=grouped.value, gauc_groups=grouped.groups, gauc_skipped=grouped.skipped)
    return results


def task_scores(logits: torch.Tensor, task_types: Sequence[str] = ()) -> torch.Tensor:
    """(N, T) model outputs -> what each task reports: a binary task's probability (the sigmoid of
    its logit), a regression task's prediction (the output itself). In the outputs' dtype."""
    probabilities = torch.sigmoid(logits)
    if "regression" not in task_types:
        return probabilities
    regression = torch.tensor([kind == "regression" for kind in task_types], device=logits.device)
    return torch.where(regression, logits, probabilities)


def logit_metrics(
    logits: torch.Tensor, labels: np.ndarray, task_names: Sequence[str], task_types: Sequence[str] = (), *, groups: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    """``task_metrics`` of (N, T) model outputs (logits; a regression task's predictions)."""
    return task_metrics(task_scores(logits.double(), task_types).numpy(), labels, task_names, task_types, groups=groups)


def mean_auc(metrics: dict[str, dict[str, float]], key: str = "auc") -> float:
    """Mean AUC (``key="gauc"``: GAUC) over the tasks that have one (NaN if none has; regression tasks have none)."""
    aucs = [m[key] for m in metrics.values() if m.get(key) is not None and not math.isnan(m[key])]
    return float(np.mean(aucs)) if aucs else math.nan


def mean_rmse(metrics: dict[str, dict[str, float]]) -> float:
    """Mean RMSE over the regression tasks (NaN if there are none)."""
    rmses = [m["rmse"] for m in metrics.values() if "rmse" in m]
    return float(np.mean(rmses)) if rmses else math.nan
