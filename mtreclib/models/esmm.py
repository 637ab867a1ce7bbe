"""ESMM: entire space multi-task model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ModelConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, MLPBank
from mtreclib.nn.products import FlatFields


def chained_log_probabilities(conditional: torch.Tensor, parents: Sequence[int | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p_t`` and ``log(1 - p_t)`` of the chained probabilities, from conditional logits.

    ``conditional`` is (B, T): task ``t``'s logit of ``p(t | parent)`` or, without a parent, of
    ``p(t)``. With ``q = sigmoid(s)``: ``p_t = p_parent * q_t``, so
    ``log p_t = log p_parent + logsigmoid(s_t)`` and, without cancellation (every term positive),
    ``1 - p_parent q_t = (1 - p_parent) + p_parent (1 - q_t)``:
    ``log(1 - p_t) = logaddexp(log(1 - p_parent), log p_parent + logsigmoid(-s_t))``.
    Parents must come before their children. Returns two (B, T) tensors.
    """
    log_p: list[torch.Tensor] = []
    log_not_p: list[torch.Tensor] = []
    for t, parent in enumerate(parents):
        log_q, log_not_q = F.logsigmoid(conditional[:, t]), F.logsigmoid(-conditional[:, t])
        if parent is None:
            log_p.append(log_q)
            log_not_p.append(log_not_q)
        else:
            log_p.append(log_p[parent] + log_q)
            log_not_p.append(torch.logaddexp(log_not_p[parent], log_p[parent] + log_not_q))
    return torch.stack(log_p, dim=1), torch.stack(log_not_p, dim=1)


def task_parents(schema: FeatureSchema, model: str) -> tuple[int | None, ...]:
    """Each task's parent (the task its positives imply), or a ValueError when no task has one."""
    parents = tuple(schema.parent_task(t) for t in range(schema.task_num))
    if all(parent is None for parent in parents):
        raise ValueError(
            f"{model} needs a task that implies another (conversion implies click): the dataset spec's implies: "
            f"(tasks {', '.join(schema.task_names)} have none)"
        )
    return parents


@register_model("esmm")
class ESMM(MultiTaskModel):
    """Shared embeddings and one tower per task; a child task's probability is its parent's times its tower's.

    Contract, for a task ``t`` whose positives imply those of ``t'`` (the schema's ``implies``:
    conversion implies click) and a tower logit ``s_t``::

        p(t' )  = sigmoid(s_t')                      pCTR, predicted directly (no parent)
        p(t | t') = sigmoid(s_t)                     pCVR, the conditional probability
        p(t)    = p(t') * p(t | t')                  pCTCVR, on the entire impression space

    chained when ``t'`` has a parent itself. ``forward`` returns ``logit p(t)`` for every task,
    computed in log space (``chained_log_probabilities``), never as a product of logits; the loss
    is the plain per-task BCE of these, i.e. ``L_ctr + L_ctcvr`` on all impressions, with no loss on
    the conditional pCVR (whose label exists only on clicked rows). ``conditional_logits`` gives
    ``logit p(t | t')``, the CVR model usable on the whole space.

    Decisions: the CTCVR label is the task's own label, which the relation makes
    ``click AND conversion`` (the dataset spec checks it on every row); each tower is an MLP of
    ``bottom_dims`` then ``tower_dims`` over the concatenated field embeddings (the paper's towers
    are 360-200-80 over 18-wide embeddings; the library's shared widths keep models comparable);
    the towers are one ``MLPBank``. A schema without any relation is refused, and so is a
    regression task (its outputs are probabilities by construction; ESCM2 likewise).

    Reference: Ma, Zhao, Huang, Wang, Hu, Zhu, Gai, "Entire Space Multi-Task Model: An Effective
    Approach for Estimating Post-Click Conversion Rate", SIGIR 2018.
    https://doi.org/10.1145/3209978.3210104
    """

    Config = ModelConfig
    paper = "Ma et al., Entire Space Multi-Task Model: An Effective Approach for Estimating Post-Click Conversion Rate, SIGIR 2018"
    min_tasks = 2
    binary_only = "its outputs are the logits of chained probabilities; train the regression task with another model"
    model_name: ClassVar[str] = "esmm"  # for the message that refuses a schema without relations

    def __init__(self, schema: FeatureSchema, config: ModelConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        self.parents = task_parents(schema, self.model_name)
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.towers = MLPBank(self.embedding.output_dim, (*c.bottom_dims, *c.tower_dims), self.task_num, c.dropout, output_layer=True)

    def tower_logits(self, emb: FlatFields) -> torch.Tensor:
        """(B, E * D) flat field embeddings -> (B, T) conditional logits ``logit p(t | parent)``."""
        return self.towers(emb).squeeze(-1)  # (B, T)

    def chain(self, conditional: torch.Tensor) -> torch.Tensor:
        """(B, T) conditional logits -> (B, T) logits of the chained probabilities, computed in at
        least float32 and returned in the towers' dtype (bfloat16 under autocast)."""
        precision = torch.promote_types(conditional.dtype, torch.float32)
        log_p, log_not_p = chained_log_probabilities(conditional.to(precision), self.parents)
        return (log_p - log_not_p).to(conditional.dtype)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits of ``p(t)`` on all impressions."""
        return self.chain(self.tower_logits(self.embedding.flat(categorical, numerical, bags)))

    def conditional_logits(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, T) ``logit p(t | parent)`` (pCVR for conversion), ``logit p(t)`` for a task without parent."""
        return self.tower_logits(self.embedding.flat(categorical, numerical, bags))

    def conditional_probabilities(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, T) ``p(t | parent)``: pCVR for conversion, on any impression, clicked or not."""
        return torch.sigmoid(self.conditional_logits(categorical, numerical, bags).float())
