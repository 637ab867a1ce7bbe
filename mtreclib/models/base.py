"""The interface the trainer knows: per-task outputs, per-task losses and which parameters are shared.

A model's output for a binary task is a logit (the loss owns the sigmoid); for a regression task
(``FeatureSchema.task_types``) it is the prediction itself, learnt by mean squared error or, as
a setting, the Huber loss (``RegressionLoss``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mtreclib.core.schema import Bag, Batch, FeatureSchema
from mtreclib.models.config import ModelConfig
from mtreclib.nn.layers import FieldEmbedding

# Rows of the probe batch that finds which tasks reach which parameters: enough that a shared
# element is rarely cut off from a task on every row that reaches it (a ReLU dead on each of
# them), few enough to cost nothing once.
PROBE_ROWS = 256


def loss_dtype(logits: torch.Tensor) -> torch.dtype:
    """The precision a loss is computed in: the logits' own when wider than float32 (float64
    checks stay exact), float32 otherwise (bfloat16 and float16 logits under autocast)."""
    return torch.promote_types(logits.dtype, torch.float32)


def task_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Each task's mean binary cross-entropy: (B, T) logits and labels, optional (B,) row weights -> (T,).

    With weights, each task's loss is the weighted mean ``sum_b w_b l_bt / sum_b w_b``. Computed
    in ``loss_dtype(logits)``.
    """
    dtype = loss_dtype(logits)
    losses = F.binary_cross_entropy_with_logits(logits.to(dtype), labels.to(dtype), reduction="none")  # (B, T)
    if weights is None:
        return losses.mean(0)
    weights = weights.to(dtype)
    return (weights.unsqueeze(1) * losses).sum(0) / weights.sum().clamp_min(1e-12)


REGRESSION_LOSSES = ("mse", "huber")


@dataclass(frozen=True)
class RegressionLoss:
    """The loss of a regression task: ``"mse"``, ``(y_hat - y)^2``, or ``"huber"``, ``(y_hat - y)^2 / 2``
    within ``delta`` of the target and ``delta (|y_hat - y| - delta / 2)`` beyond (PyTorch's ``huber_loss``)."""

    kind: str = "mse"
    delta: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in REGRESSION_LOSSES:
            raise ValueError(f"regression loss must be one of {', '.join(REGRESSION_LOSSES)}, got {self.kind!r}")
        if not self.delta > 0:
            raise ValueError(f"huber delta must be positive, got {self.delta}")

    def __call__(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Elementwise loss of predictions and targets of one shape."""
        if self.kind == "mse":
            return F.mse_loss(predictions, targets, reduction="none")
        return F.huber_loss(predictions, targets, reduction="none", delta=self.delta)


def task_loss(
    outputs: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    regression: Sequence[int] = (),
    regression_loss: RegressionLoss = RegressionLoss(),
) -> torch.Tensor:
    """Each task's mean loss: (B, T) outputs and labels, optional (B,) row weights -> (T,).

    BCE with logits for a binary task; ``regression_loss`` of the output itself for the tasks at
    positions ``regression``. Weighted and computed as ``task_bce``; without regression tasks it
    is ``task_bce``, bit for bit.
    """
    if not regression:
        return task_bce(outputs, labels, weights)
    dtype = loss_dtype(outputs)
    outputs, labels = outputs.to(dtype), labels.to(dtype)
    columns = torch.tensor(list(regression), device=outputs.device)
    binary = torch.ones(outputs.shape[1], dtype=torch.bool, device=outputs.device)
    binary[columns] = False
    # Each column's loss computed as its type asks; the BCE of regression columns is discarded.
    bce = F.binary_cross_entropy_with_logits(outputs, labels.clamp(0, 1), reduction="none")  # (B, T)
    losses = torch.where(binary, bce, regression_loss(outputs, labels))  # (B, T)
    if weights is None:
        return losses.mean(0)
    weights = weights.to(dtype)
    return (weights.unsqueeze(1) * losses).sum(0) / weights.sum().clamp_min(1e-12)


def multitask_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over tasks of each task's mean binary cross-entropy: (B, T) logits and labels -> (),
    in ``loss_dtype(logits)``."""
    dtype = loss_dtype(logits)
    return F.binary_cross_entropy_with_logits(logits.to(dtype), labels.to(dtype))


class TaskLosses(NamedTuple):
    """The losses of one training step.

    Attributes:
        tasks: (T,) one loss per task; an optimisation strategy weighs and balances these.
        auxiliary: () a regulariser that belongs to no task (DSelect-k's entropy term), added as
            it is by every strategy.
    """

    tasks: torch.Tensor
    auxiliary: torch.Tensor | None = None


class MultiTaskModel(nn.Module):
    """Base class of every model.

    ``forward(categorical, numerical, bags)`` maps (B, F) int64 ids, (B, M) floats and one
    ``Bag`` per multi-valued field to (B, T) logits, one per task; no sigmoid inside, the loss
    owns it. For a regression task the output is the prediction (``task_loss``; the trainer sets
    ``regression_loss``). ``Config`` is the model's typed hyperparameters; ``__init__(schema, config)``.
    A model whose outputs are probabilities by design (ESMM's chain) sets ``binary_only`` and
    refuses regression tasks.

    The trainer makes one optimizer step from ``batches_per_step`` consecutive batches: an
    optimisation strategy turns ``task_losses`` into gradients (equal weights by default:
    ``training_loss``). A model with its own way to learn (MetaHeac's meta-learning) or its own
    loss (ESMM, ESCM2) overrides ``task_losses``; the trainer never asks which model it trains.
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    paper: ClassVar[str] = ""  # authors, title, venue and year, for mtrec models
    batches_per_step: int = 1
    min_tasks: int = 1
    # Why ``mtrec export`` cannot write this model, for a model known to be beyond the exporters
    # (said before trying); empty when it can. The registry-generated export tests hold every
    # model to one or the other.
    export_refusal: ClassVar[str] = ""
    # Why this model cannot learn a regression task (its outputs are probabilities by design); empty when it can.
    binary_only: ClassVar[str] = ""

    @classmethod
    def needed_roles(cls, config: ModelConfig) -> tuple[str, ...]:
        """Field roles of which the data must have at least one field (PEPNet's prior); empty: none needed.

        Known from the settings alone, so that a benchmark can refuse a model its data cannot
        feed before the first run rather than fail each of its runs.
        """
        return ()

    def __init__(self, schema: FeatureSchema, config: ModelConfig | None = None):
        super().__init__()
        config = config if config is not None else self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        if schema.task_num < self.min_tasks:
            raise ValueError(f"{type(self).__name__} needs at least {self.min_tasks} tasks, the data has {schema.task_num}")
        if self.binary_only and schema.regression_tasks:
            task = schema.task_names[schema.regression_tasks[0]]
            raise ValueError(f"{type(self).__name__} cannot learn regression task {task!r}: {self.binary_only}")
        self.schema = schema
        self.config = config
        self.task_num = schema.task_num
        self.regression_loss = RegressionLoss()
        self._shared: list[str] | None = None

    def logits(self, batch: Batch) -> torch.Tensor:
        """(B, T) logits of a batch's features."""
        return self(batch.categorical, batch.numerical, batch.bags)

    def batch_task_loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, T) outputs of ``batch``'s rows -> (T,) each task's loss by its type (``task_loss``)."""
        return task_loss(outputs, batch.labels, batch.weights, self.schema.regression_tasks, self.regression_loss)

    def task_losses(self, batches: Sequence[Batch]) -> TaskLosses:
        """The (T,) per-task losses of one step: each task's loss (BCE, or the regression loss), averaged over ``batches``."""
        losses = [self.batch_task_loss(self.logits(b), b) for b in batches]
        return TaskLosses(losses[0] if len(losses) == 1 else torch.stack(losses).mean(0))

    def training_loss(self, batches: Sequence[Batch]) -> torch.Tensor:
        """The loss of one optimizer step with equal task weights: mean task loss plus any auxiliary term."""
        losses = self.task_losses(batches)
        total = losses.tasks.mean()
        return total if losses.auxiliary is None else total + losses.auxiliary

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters that more than one task's logit depends on (what gradient methods balance).

        Found once on a probe batch (``task_reach``: which tasks' logits give each element a
        nonzero gradient), so that every model answers correctly without a list written by
        hand; a model may override it.
        """
        if self._shared is None:
            self._shared = _probe_shared(self)
        named = dict(self.named_parameters())
        return [named[name] for name in self._shared]

    def representation(self) -> nn.Module | None:
        """The module whose output every task is computed from: the shared representation Z.

        MGDA-UB takes the per-task gradients with respect to Z instead of the shared parameters
        (a strategy hooks this module's output). The default is the model's one
        ``FieldEmbedding``, the field embeddings every model reads; None when there is none or
        several (SingleTask: one per task, nothing shared). A model whose tasks all read one
        deeper module (a shared bottom) may return it instead: the per-task backward passes
        then stop there, which is cheaper and makes the bound tighter.
        """
        found = [module for module in self.modules() if isinstance(module, FieldEmbedding)]
        return found[0] if len(found) == 1 else None


def probe_batch(schema: FeatureSchema, size: int = 8, device: torch.device | str = "cpu") -> Batch:
    """A small batch of valid inputs for ``schema`` (ids in range, one value per bag row)."""
    generator = torch.Generator().manual_seed(0)
    categorical = torch.zeros(size, schema.field_num, dtype=torch.long)
    for f, dim in enumerate(schema.field_dims):
        categorical[:, f] = torch.randint(0, dim, (size,), generator=generator)
    numerical = torch.rand(size, schema.numerical_num, generator=generator)
    bags = tuple(
        Bag(torch.randint(0, b.vocab_size, (size,), generator=generator), torch.arange(size + 1), torch.ones(size) if b.weighted else None)
        for b in schema.bags
    )
    labels = (torch.rand(size, schema.task_num, generator=generator) < 0.5).float()
    device = torch.device(device)
    return Batch(categorical.to(device), numerical.to(device), labels.to(device), tuple(b.to(device) for b in bags))


def task_reach(model: MultiTaskModel, parameters: list[nn.Parameter]) -> list[torch.Tensor]:
    """For each parameter, how many tasks' logits give each of its elements a nonzero gradient.

    On the model's probe batch, in evaluation mode with every BatchNorm's running statistics
    first set to the probe batch's own. Neither plain mode answers right: in evaluation mode the
    initial running statistics can leave a unit's ReLU dead on every probe row (a small PLE's
    second tower then reaches nothing); in training mode the normalisation cancels the gradient
    of the bias before it, up to rounding that lands on exactly zero for one task and not another.
    Normalising by fixed batch statistics has neither fault. What remains is a shared element
    whose gradient from some task is exactly zero on every probe row that reaches it (ReLUs dead
    on each): rare over 256 rows even for the tests' tiny models, and harmless (that element
    leaves the decision and takes the task-specific gradient). The probe leaves no trace: it runs
    on copies of the buffers and restores the random state.
    """
    if not parameters:
        return []
    device = parameters[0].device
    batch = probe_batch(model.schema, size=PROBE_ROWS, device=device)
    # This step's graph may have saved the buffers: the probe's forward passes must not bump them.
    originals = [(module, dict(module._buffers)) for module in model.modules() if module._buffers]
    for module, buffers in originals:
        module._buffers.update({name: b.clone() for name, b in buffers.items() if b is not None})
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for norm in norms:
                norm.momentum = 1.0  # the running statistics become this batch's
            model.train()
            with torch.no_grad():
                model.logits(batch)
            model.eval()
            with torch.enable_grad():
                logits = model.logits(batch)  # (B, T)
                reach = [torch.zeros(p.shape, dtype=torch.int16, device=device) for p in parameters]
                for t in range(model.task_num):
                    grads = torch.autograd.grad(logits[:, t].sum(), parameters, retain_graph=True, allow_unused=True, materialize_grads=True)
                    torch._foreach_add_(reach, [(g != 0).to(torch.int16) for g in grads])
    finally:
        model.train(was_training)
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        for module, buffers in originals:
            module._buffers.update(buffers)
    return reach


def _probe_shared(model: MultiTaskModel) -> list[str]:
    names, parameters = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
    reach = task_reach(model, list(parameters))
    return [name for name, counts in zip(names, reach) if bool((counts > 1).any())]
