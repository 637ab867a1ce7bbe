"""Group AUC (GAUC): the AUC within each group (a user, a search page), averaged over the groups
weighted by their impressions.

    GAUC = sum_g n_g * AUC_g / sum_g n_g,  over the groups g whose labels have both classes

as the DIN paper defines it and FuxiCTR's ``gAUC`` computes it (``n_g``: the group's rows). A group
whose labels are all 0 or all 1 has no pair to rank: it is left out, and counted, so that a figure
over few groups is seen as such.

Vectorised for millions of rows: one sort by (group, score), the rank of every row within its
group with ties averaged (as scikit-learn's ``roc_auc_score`` counts a tie as half a pair), and
the Mann-Whitney form of each group's AUC from its positives' rank sum,

    AUC_g = (R_g - P_g (P_g + 1) / 2) / (P_g N_g),

R_g the sum of the positives' ranks, P_g and N_g its positives and negatives. No loop over groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroupAUC:
    """A GAUC and the groups behind it.

    Attributes:
        value: the impression-weighted mean of the groups' AUCs; NaN when no group has both classes.
        groups: the groups that counted (both classes among their labels).
        skipped: the groups left out (one class only).
    """

    value: float
    groups: int
    skipped: int


def group_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> GroupAUC:
    """GAUC of (N,) 0/1 ``labels`` and (N,) ``scores`` (higher: more likely 1) within (N,) ``groups`` ids."""
    labels, scores, groups = np.asarray(labels), np.asarray(scores, dtype=np.float64), np.asarray(groups)
    if not labels.shape == scores.shape == groups.shape or labels.ndim != 1:
        raise ValueError(f"labels, scores and groups must be (N,) arrays of one length, got {labels.shape}, {scores.shape}, {groups.shape}")
    n = len(labels)
    if n == 0:
        return GroupAUC(math.nan, 0, 0)
    order = np.lexsort((scores, groups))  # by group, then by score within a group
    g, s, y = groups[order], scores[order], labels[order].astype(np.float64)
    new_group = np.empty(n, dtype=bool)
    new_group[0], new_group[1:] = True, g[1:] != g[:-1]
    new_run = new_group.copy()  # a run of equal scores within one group: its rows share a rank
    new_run[1:] |= s[1:] != s[:-1]
    position = np.arange(n, dtype=np.float64)
    group_start = np.maximum.accumulate(np.where(new_group, position, 0.0))
    run_starts = np.flatnonzero(new_run)
    run_lengths = np.diff(np.append(run_starts, n))
    # 1-based rank within the group, averaged over the tie run: its first rank plus (length - 1) / 2.
    first = np.repeat(position[run_starts] - group_start[run_starts] + 1.0, run_lengths)
    rank = first + np.repeat((run_lengths - 1) / 2.0, run_lengths)
    starts = np.flatnonzero(new_group)
    size = np.diff(np.append(starts, n)).astype(np.float64)  # (G,) impressions per group
    positives = np.add.reduceat(y, starts)  # (G,)
    rank_sum = np.add.reduceat(rank * y, starts)  # (G,)
    negatives = size - positives
    both = (positives > 0) & (negatives > 0)
    used = int(both.sum())
    if used == 0:
        return GroupAUC(math.nan, 0, len(starts))
    p, q = positives[both], negatives[both]
    auc = (rank_sum[both] - p * (p + 1) / 2) / (p * q)  # (G',)
    value = float(np.sum(size[both] * auc) / np.sum(size[both]))
    return GroupAUC(value, used, len(starts) - used)
