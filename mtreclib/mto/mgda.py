"""MGDA: the min-norm point of the tasks' gradients, a common descent direction; MGDA-UB at the shared representation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mtreclib.core.settings import search_choices, setting
from mtreclib.models.base import MultiTaskModel, TaskLosses
from mtreclib.mto.base import StepContext
from mtreclib.mto.gradients import GradientConfig, GradientStrategy
from mtreclib.mto.registry import register_strategy
from mtreclib.mto.solvers import min_norm_weights
from mtreclib.nn.layers import FieldEmbedding

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@dataclass(frozen=True)
class MGDAConfig(GradientConfig):
    """MGDA's settings: the paper's algorithm by default (no normalisation, parameter level)."""

    mgda_normalization: str = setting(
        "none",
        "divide each task's gradient by its norm (l2), its loss (loss) or both (loss+) before MGDA's min-norm solve (mgda)",
        choices=NORMALIZATIONS,
        search=search_choices(*NORMALIZATIONS),
    )
    mgda_upper_bound: bool = setting(
        False, "MGDA-UB: gradients of the shared representation (model.representation()) instead of the shared parameters (mgda)",
        search=search_choices(False, True),
    )


@register_strategy("mgda")
class MGDA(GradientStrategy):
    """MGDA: the min-norm point of the tasks' gradients, a direction that no task's loss rises along.

    Multiple-gradient descent: the weights ``a`` on the simplex that minimise ``|sum_t a_t g_t|``
    over the shared parameters; the update ``sum_t a_t g_t`` decreases every task's loss (or is zero
    at a Pareto-stationary point). As in the authors' code, the weights scale each task's whole
    loss, task-specific parameters included, and with ``mgda_normalization`` they are solved on
    normalised gradients and applied to the raw ones.

    MGDA-UB (``mgda_upper_bound``): the gradients are taken with respect to the shared
    representation Z, the output of ``model.representation()`` (by default the field
    embeddings), captured by a forward hook: T backward passes that stop at Z, then one backward
    of ``sum_t a_t L_t``. The authors' bound needs every shared parameter below Z; for models whose
    shared experts sit above the embeddings (MMoE, PLE) it is the cheap heuristic rather than a
    bound. The field embeddings are then formed whole (``split_products`` off on that
    ``FieldEmbedding``: the same numbers, a slower first product) so that Z exists as a tensor.
    A model without a single representation (SingleTask: nothing shared) falls back to the
    parameter level.

    Reference: Sener, Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
    https://arxiv.org/abs/1810.04650
    """

    Config = MGDAConfig
    task_specific = "weighted"

    def __init__(self, task_num: int, config: MGDAConfig | None = None):
        super().__init__(task_num, config)
        self._captured: list[torch.Tensor] = []
        self._hook = None

    def attach(self, model: MultiTaskModel) -> None:
        if not self.config.mgda_upper_bound:
            return
        module = model.representation()
        if module is None:
            return  # parameter level: see the class docstring
        if isinstance(module, FieldEmbedding):
            module.split_products = False  # FlatFields then calls the module: its output is Z
        self._hook = module.register_forward_hook(self._capture)
        # One weighted backward: DistributedDataParallel averages the gradients itself.
        self.syncs_gradients = False

    def _capture(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training and torch.is_grad_enabled():
            self._captured.append(output)

    def backward(self, losses: TaskLosses, context: StepContext) -> None:
        if self._hook is None:
            super().backward(losses, context)
            return
        captured, self._captured = self._captured, []
        if not captured:
            raise RuntimeError("MGDA-UB saw no shared representation in this step's forward pass (is the model compiled?)")
        tasks = losses.tasks
        rows = []
        for t in range(self.task_num):
            grads = torch.autograd.grad(tasks[t], captured, retain_graph=True, allow_unused=True, materialize_grads=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        z = torch.stack(rows)  # (T, rows x width of Z)
        # The ranks hold different rows of Z: the Gram of all of them is the sum of the ranks'
        # (the mean differs by a constant factor, which leaves the min-norm weights unchanged).
        gram = context.all_reduce_mean(z @ z.T).double().cpu()
        values = context.all_reduce_mean(tasks.detach().float()).double().cpu()
        weights = self.shared_weights(gram, values, context)
        self.last_weights.copy_(weights * self.task_num)
        total = (weights.to(tasks) * tasks).sum()
        (total if losses.auxiliary is None else total + losses.auxiliary).backward()

    def weigh(self, gram: np.ndarray, losses: torch.Tensor, context: StepContext) -> np.ndarray:
        norms = np.sqrt(np.maximum(np.diag(gram), 1e-30))
        values = np.maximum(losses.numpy(), 1e-12)
        scale = {"none": np.ones_like(norms), "l2": norms, "loss": values, "loss+": values * norms}[self.config.mgda_normalization]
        return min_norm_weights(gram / np.outer(scale, scale))
