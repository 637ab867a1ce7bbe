"""Per-task gradients as one (T, P) matrix, and the base of the methods that combine them.

The gradient methods (PCGrad, MGDA, CAGrad, Nash-MTL, IMTL, GradNorm, MetaBalance) need every
task's own gradient. Each step they are taken once for every trainable parameter of the model and
flattened into the rows of one (T, P) matrix: one backward pass per task, or all of them in one
vmapped pass (``mto_batched_grads``), and no arithmetic per parameter in Python. The first S
columns hold the shared parameters; a method decides from their (T, T) Gram matrix (MetaBalance:
from per-parameter norms), and the update is one product with the matrix, written back as the
parameters' ``.grad``.

Element-level sharing. A shared parameter may hold task-specific parts: a bank of towers
(``MLPBank``) keeps every task's weights in one tensor, a gate bank every task's gate rows. Which
tasks reach each element is probed once, when the first step is taken (which tasks' logits give
it a nonzero gradient on the model's probe batch), over the parameters the model declares shared
where it overrides ``shared_parameters`` and over all of them otherwise; an element that exactly
one task reaches is that task's own:

- it stays out of the decision (the Gram matrix, the norms), which every paper takes over the
  shared parameters alone;
- it never receives another task's gradient, only its own task's, with the weight the method's
  algorithm gives task-specific parameters (``GradientStrategy.task_specific``).

A shared parameter none of whose elements two tasks reach (a tower bank, a gate bank) moves to
the task-specific columns whole; the few parameters that mix both (AITM's bank of bottoms, where
task t's bottom also feeds task t + 1) keep a list of their owned columns. An element no task
reaches on the probe (an embedding row absent from it) counts as shared.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mtreclib.core.settings import Settings, setting
from mtreclib.models.base import MultiTaskModel, TaskLosses, task_reach
from mtreclib.mto.base import StepContext, Strategy
from mtreclib.nn.layers import sparse_tables


@dataclass(frozen=True)
class GradientConfig(Settings):
    """What every gradient method takes."""

    mto_batched_grads: bool = setting(
        False,
        "gradient methods: take the per-task gradients in one vmapped backward (autograd.grad with is_grads_batched) "
        "instead of one backward per task",
    )


class GradientLayout:
    """Where each of a model's parameters lives in the flat (T, P) gradient matrix.

    Attributes:
        parameters: the model's trainable parameters: shared first, then task-specific.
        sizes: their element counts (the matrix's column blocks).
        shared_count: how many of ``parameters`` are shared.
        shared_size: S, the columns of the shared parameters.
        owned: (O,) the columns among the first S that only one task reaches, or None.
    """

    def __init__(self, model: MultiTaskModel):
        self.model = weakref.ref(model)
        candidates = _candidates(model)
        reach = task_reach(model, candidates)
        shared, owned_masks = [], []
        for parameter, count in zip(candidates, reach):
            if bool((count >= 2).any()):
                shared.append(parameter)
                owned_masks.append(count.reshape(-1) == 1)
        ids = {id(p) for p in shared}
        specific = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        self.parameters: list[nn.Parameter] = [*shared, *specific]
        self.sizes = [p.numel() for p in self.parameters]
        self.shared_count = len(shared)
        self.shared_size = sum(self.sizes[: self.shared_count])
        owned = torch.cat(owned_masks).nonzero().squeeze(1) if owned_masks else torch.zeros(0, dtype=torch.long)
        device = self.parameters[0].device
        self.owned = owned.to(device) if len(owned) else None
        self._segments: torch.Tensor | None = None

    def segments(self) -> torch.Tensor:
        """(S,) which shared parameter each shared column belongs to."""
        if self._segments is None:
            sizes = torch.tensor(self.sizes[: self.shared_count], dtype=torch.long)
            self._segments = torch.repeat_interleave(torch.arange(self.shared_count), sizes).to(self.parameters[0].device)
        return self._segments

    def gradients(self, losses: TaskLosses, *, batched: bool = False, keep_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(T, P) each task's gradient, and the (P,) gradient of the auxiliary term (None without one).

        ``keep_graph``: leave the graph for one more backward pass (the fused tables' update)."""
        rows = losses.tasks if losses.auxiliary is None else torch.cat([losses.tasks, losses.auxiliary.reshape(1)])
        count = rows.shape[0]
        if batched:
            eye = torch.eye(count, device=rows.device, dtype=rows.dtype)
            grads = torch.autograd.grad(
                rows, self.parameters, eye, retain_graph=keep_graph, is_grads_batched=True, allow_unused=True, materialize_grads=True
            )
            matrix = torch.cat([g.reshape(count, -1) for g in grads], dim=1)  # (T, P), one copy
        else:
            matrix = torch.empty(count, sum(self.sizes), dtype=self.parameters[0].dtype, device=self.parameters[0].device)
            for t in range(count):
                retain = keep_graph or t < count - 1
                grads = torch.autograd.grad(rows[t], self.parameters, retain_graph=retain, allow_unused=True, materialize_grads=True)
                torch.cat([g.reshape(-1) for g in grads], out=matrix[t])  # (P,) straight into the row
        if losses.auxiliary is None:
            return matrix, None
        return matrix[:-1], matrix[-1]

    def shared_gram(self, matrix: torch.Tensor) -> torch.Tensor:
        """(T, T) inner products of the tasks' gradients over the shared, not owned, columns (float64, CPU)."""
        shared = matrix[:, : self.shared_size]  # (T, S) a view
        gram = shared @ shared.T
        if self.owned is not None:
            owned = shared.index_select(1, self.owned)  # (T, O)
            gram = gram - owned @ owned.T
        return gram.double().cpu()

    def combine(self, matrix: torch.Tensor, weights: torch.Tensor, own: torch.Tensor | None) -> torch.Tensor:
        """(P,) the update: ``weights @ G`` on the shared columns; ``own @ G`` on the task-specific
        and owned ones (``own`` None: ``weights`` there too). Weights are (T,)."""
        weights = weights.to(matrix)
        if own is None:
            return weights @ matrix
        own = own.to(matrix)
        size = self.shared_size
        update = torch.empty(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
        torch.mv(matrix[:, :size].T, weights, out=update[:size])
        torch.mv(matrix[:, size:].T, own, out=update[size:])
        if self.owned is not None:
            update[:size].index_copy_(0, self.owned, own @ matrix[:, :size].index_select(1, self.owned))
        return update

    def set_gradients(self, update: torch.Tensor) -> None:
        """Add the (P,) ``update`` to the parameters' gradients (views of it where there were none)."""
        for parameter, grad in zip(self.parameters, update.split(self.sizes)):
            grad = grad.view_as(parameter)
            if parameter.grad is None:
                parameter.grad = grad
            else:
                parameter.grad += grad

    def average_gradients(self, context: StepContext) -> None:
        """Replace the parameters' gradients by their mean over the processes, in one collective."""
        if context.world_size == 1:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.parameters])
        flat = context.all_reduce_mean(flat)
        for parameter in self.parameters:
            parameter.grad = None
        self.set_gradients(flat)


def _candidates(model: MultiTaskModel) -> list[nn.Parameter]:
    """The parameters whose elements are probed: those the model declares shared when it says so
    itself (an override of ``shared_parameters``), otherwise every trainable parameter.

    The default ``shared_parameters`` probes in evaluation mode, where BatchNorm's initial running
    statistics can leave a small tower's ReLUs dead for every probe row (a tiny PLE then shows
    nothing shared); ``_element_reach`` asks the same question per element, in training mode.
    """
    if type(model).shared_parameters is not MultiTaskModel.shared_parameters:
        return model.shared_parameters()
    return [p for p in model.parameters() if p.requires_grad]


class GradientStrategy(Strategy):
    """Base of the methods that combine per-task gradients.

    Each step: the task losses (after ``scale_losses``, IMTL's learned scales), the (T, P)
    gradient matrix, averaged over the processes under torchrun (``syncs_gradients``: every rank
    then takes the same decision from the same numbers and applies the same update); the method's
    ``weigh`` turns the shared Gram matrix into per-task weights; the update is set as ``.grad``.

    Attributes:
        task_specific: what the task-specific parameters and owned elements receive. ``"own"``:
            their task's own gradient at equal weighting's scale (``g_t / T``), as the papers of
            PCGrad, CAGrad, IMTL and MetaBalance update task-specific parameters by their own
            loss; ``"weighted"``: the method's weight ``w_t g_t``, as MGDA's, Nash-MTL's and
            GradNorm's reference code backpropagates the weighted loss through every parameter.
    """

    Config = GradientConfig
    syncs_gradients = True
    task_specific: ClassVar[str] = "own"

    def __init__(self, task_num: int, config: Settings | None = None):
        super().__init__(task_num, config)
        self._layout: GradientLayout | None = None

    def layout(self, model: MultiTaskModel) -> GradientLayout:
        """The model's layout, probed at the first step."""
        if self._layout is None or self._layout.model() is not model:
            self._layout = GradientLayout(model)
        return self._layout

    def scale_losses(self, losses: TaskLosses, context: StepContext) -> TaskLosses:
        """The losses whose gradients are combined (IMTL-L scales them); the losses themselves by default."""
        return losses

    def backward(self, losses: TaskLosses, context: StepContext) -> None:
        task_losses, losses = losses, self.scale_losses(losses, context)
        layout = self.layout(context.model)
        tables = [leaf for module in sparse_tables(context.model) for leaf in module.autograd_leaves()]
        matrix, auxiliary = layout.gradients(losses, batched=self.config.mto_batched_grads, keep_graph=bool(tables))
        values = losses.tasks.detach().float()
        if context.world_size > 1:
            matrix = context.all_reduce_mean(matrix)
            values = context.all_reduce_mean(values)
            if auxiliary is not None:
                auxiliary = context.all_reduce_mean(auxiliary)
        update = self.update(matrix, layout, values.double().cpu(), context)
        if auxiliary is not None:
            update += auxiliary  # added as it is, like every strategy
        layout.set_gradients(update)
        if tables:
            self.update_tables(task_losses, tables)

    def update_tables(self, losses: TaskLosses, leaves: list[torch.Tensor]) -> None:
        """The fused tables' step (torchrec backend): the gradient of ``sum_t w_t L_t``, with this
        step's task weights (``task_weights()``, which include IMTL's loss scales), through the
        tables alone.

        fbgemm updates a table inside its backward pass, so its per-task gradients never exist as
        tensors: the method decides on the dense shared parameters (as LibMTL balances its encoder)
        and the tables, shared by every task, follow the combination it chose. A backward pass
        with ``inputs=`` the kernels' leaves leaves every dense gradient as the method set it.
        """
        weights = (self.last_weights / self.task_num).to(losses.tasks)
        total = (weights * losses.tasks).sum()
        if losses.auxiliary is not None:
            total = total + losses.auxiliary
        torch.autograd.backward(total, inputs=leaves)

    def update(self, matrix: torch.Tensor, layout: GradientLayout, losses: torch.Tensor, context: StepContext) -> torch.Tensor:
        """(P,) this step's gradient of every parameter, from the (T, P) matrix and the (T,) losses."""
        weights = self.shared_weights(layout.shared_gram(matrix), losses, context)
        self.last_weights.copy_(weights * self.task_num)
        own = None if self.task_specific == "weighted" else torch.full((self.task_num,), 1.0 / self.task_num)
        return layout.combine(matrix, weights, own)

    def shared_weights(self, gram: torch.Tensor, losses: torch.Tensor, context: StepContext) -> torch.Tensor:
        """(T,) float64 weights of the shared update; equal weights where nothing is shared."""
        if float(gram.trace()) <= 0.0:
            return torch.full((self.task_num,), 1.0 / self.task_num, dtype=torch.float64)
        return torch.as_tensor(self.weigh(gram.numpy(), losses, context), dtype=torch.float64)

    def weigh(self, gram: np.ndarray, losses: torch.Tensor, context: StepContext) -> np.ndarray:
        """The method: (T, T) Gram matrix of the shared gradients and (T,) losses -> (T,) weights."""
        raise NotImplementedError
