"""Multi-task optimisation strategies: how the tasks' losses and gradients are combined.

``strategy_class(name)`` and ``create_strategy(name, task_num, ...)`` go through one registry;
``--mto NAME`` picks one for a run. Importing this package registers them all.
"""

from mtreclib.mto.base import NoSettings, StepContext, Strategy
from mtreclib.mto.registry import create_strategy, list_strategies, register_strategy, strategy_class
from mtreclib.mto import weighting  # noqa: F401  registers ew and fixed

__all__ = ["NoSettings", "StepContext", "Strategy", "create_strategy", "list_strategies", "register_strategy", "strategy_class"]
