"""Means and spreads over seeds, and the test that says whether a model is beaten by the best.

Why Welch's t-test: the seeds of one model are independent runs (initialisation and shuffling
change; the data and the split do not), so each model's scores are a small sample of its
seed-to-seed distribution, and the question is whether two such distributions have different
means. Models differ in how much they vary from seed to seed (MetaHeac's meta-step is noisier
than Shared-Bottom), so the equal-variance Student test would be wrong; Welch's does not assume
it. The simpler rule "means within one combined standard deviation" has no stated error rate and
calls more differences real as the number of seeds grows only by accident. Caveats, stated in
the report: with few seeds the test has little power (two seeds give about one degree of
freedom), so "not distinguishable" is common and means "not shown to differ", not "equal"; the
spread is over training seeds on one fixed test set, so it leaves out the test set's own
sampling error; and no correction is made for comparing many models with the best.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Two-sided significance level for "distinguishable from the best".
ALPHA = 0.05


@dataclass(frozen=True)
class Spread:
    """Values of one quantity over seeds."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof 1); NaN with fewer than two values."""
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else math.nan


def spread(values: Iterable[float | None]) -> Spread:
    """A ``Spread``; missing values (None) are left out, NaN is kept (it makes the mean NaN)."""
    return Spread(tuple(float(v) for v in values if v is not None))


def welch_p_value(a: Spread, b: Spread) -> float:
    """Two-sided p-value of Welch's t-test for equal means; NaN when it cannot be computed.

    It needs two values on each side. Where neither side varies at all (the t statistic is
    0/0), equal means give 1 and different means 0: identical deterministic runs are equal,
    and different ones differ with certainty.
    """
    if a.n < 2 or b.n < 2 or math.isnan(a.mean) or math.isnan(b.mean):
        return math.nan
    if a.std == 0 and b.std == 0:
        return 1.0 if a.mean == b.mean else 0.0
    return float(stats.ttest_ind(a.values, b.values, equal_var=False).pvalue)


def indistinguishable(candidate: Spread, best: Spread, alpha: float = ALPHA) -> bool:
    """True when the test cannot tell ``candidate``'s mean from ``best``'s at level ``alpha``.

    False when it can, or when there are too few seeds to test (no claim is made then).
    """
    p = welch_p_value(candidate, best)
    return not math.isnan(p) and p >= alpha
