"""Multi-task optimisation strategies: how the tasks' losses and gradients are combined.

``strategy_class(name)`` and ``create_strategy(name, task_num, ...)`` go through one registry;
``--mto NAME`` picks one for a run. Importing this package registers them all, loss weighting
first (``ew``, ``fixed``, ``uw``, ``dwa``, ``rlw``, ``famo``), then the methods that take each task's
gradient (``gradnorm``, ``pcgrad``, ``mgda``, ``cagrad``, ``nashmtl``, ``imtl``, ``metabalance``).
"""

from mtreclib.mto import cagrad, dwa, famo, gradnorm, imtl, metabalance, mgda, nashmtl, pcgrad, rlw, uw, weighting  # noqa: F401, I001  registers the loss weightings  # noqa: F401, I001  and the gradient methods
from mtreclib.mto.base import NoSettings, StepContext, Strategy
from mtreclib.mto.gradients import GradientStrategy
from mtreclib.mto.registry import create_strategy, list_strategies, register_strategy, strategy_class

__all__ = [
    "GradientStrategy",
    "NoSettings",
    "StepContext",
    "Strategy",
    "create_strategy",
    "list_strategies",
    "register_strategy",
    "strategy_class",
]
