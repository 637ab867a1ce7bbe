"""Optuna, the optional dependency of tuning: imported here only, with a one-line error when missing."""

from __future__ import annotations

import warnings
from types import ModuleType

from mtreclib.core.errors import UserError


def require_optuna() -> ModuleType:
    """The ``optuna`` module, quiet (mtrec prints its own line per trial); a ``UserError`` when not installed."""
    try:
        import optuna
    except ImportError:
        raise UserError("tuning needs Optuna, which is not installed: pip install 'mtreclib[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # The heartbeat that marks a killed worker's trial failed, and the matplotlib plots, are
    # "experimental" in Optuna's terms: used on purpose, no warning each time.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna
