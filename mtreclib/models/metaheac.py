"""MetaHeac: meta hybrid experts and critics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtreclib.core.schema import Bag, Batch, FeatureSchema
from mtreclib.core.settings import search_range, setting
from mtreclib.models.base import MultiTaskModel, TaskLosses
from mtreclib.models.config import ExpertConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, Gate, MLPBank, mix


@dataclass(frozen=True)
class MetaHeacConfig(ExpertConfig):
    """MetaHeac's settings: experts, critics and the inner step's learning rate (the original's)."""

    critic_num: int = setting(5, "critic towers (metaheac)", minimum=1, search=search_range(1, 8))
    local_lr: float = setting(
        2e-4, "learning rate of the inner meta-learning step (metaheac)", minimum=0, search=search_range(1e-5, 1e-3, log=True)
    )


@register_model("metaheac")
class MetaHeac(MultiTaskModel):
    """Hybrid experts and critics, meta-trained on the task embedding.

    Experts as in MMoE and ``critic_num`` critic towers. A learned task embedding and the mean of
    the field embeddings, concatenated, feed an expert gate (the task's mixture of experts) and a
    critic gate. Task ``t``'s probability is the critic-gate-weighted **sum** of the critics'
    probabilities, ``p_t = sum_c w_tc * sigmoid(l_tc)``; ``forward`` returns its logit
    ``log p_t - log(1 - p_t)``, computed with log-sum-exp so that it stays finite.

    Deliberate difference from the original MTReclib: it takes the weighted *mean*, which caps
    every prediction at ``1 / critic_num`` (0.2 with five critics).

    Meta-training, as in the original: each batch is split into a support and a query half; an
    inner step adapts the task embedding by ``local_lr`` on the support loss, keeping the graph
    (second-order); the outer loss is the query loss under the adapted embedding, averaged over
    ``batches_per_step = 2`` consecutive batches. Evaluation uses the unadapted embedding.

    Fields of unequal widths (per-field embeddings): the experts read them side by side; the
    gates' mean over fields reads each field projected to ``embed_dim`` by a bias-free linear map
    of its own (``FieldEmbedding(stacked=True)``), since a mean needs one width.

    Reference: Zhu, Liu, Xie, Zhuang, Hao, Ge, Zhang, Lin, Cao, "Learning to Expand Audience via
    Meta Hybrid Experts and Critics for Recommendation and Advertising", KDD 2021.
    https://doi.org/10.1145/3447548.3467093
    """

    batches_per_step = 2

    Config = MetaHeacConfig
    paper = "Zhu et al., Learning to Expand Audience via Meta Hybrid Experts and Critics, KDD 2021"

    def __init__(self, schema: FeatureSchema, config: MetaHeacConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        embed_dim, bottom_dims, tower_dims, dropout = c.embed_dim, c.bottom_dims, c.tower_dims, c.dropout
        expert_num, critic_num = c.expert_num, c.critic_num
        self.local_lr = c.local_lr
        self.embedding = FieldEmbedding.from_schema(schema, embed_dim, stacked=True)
        self.task_embedding = nn.Embedding(self.task_num, embed_dim)
        self.experts = MLPBank(self.embedding.output_dim, bottom_dims, expert_num, dropout)
        self.critics = MLPBank(bottom_dims[-1], tower_dims, critic_num, dropout, output_layer=True)
        self.expert_gate = Gate(2 * embed_dim, expert_num)
        self.critic_gate = nn.Linear(2 * embed_dim, critic_num)

    def forward(
        self,
        categorical: torch.Tensor,
        numerical: torch.Tensor,
        bags: Sequence[Bag] = (),
        task_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits.

        ``task_embedding`` (T, D) replaces the learned one (the meta-learning inner step).
        """
        task_emb = self.task_embedding.weight if task_embedding is None else task_embedding  # (T, D)
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        fields = emb.fields()  # (B, E, D)
        batch_size, task_num = fields.shape[0], task_emb.shape[0]
        context = fields.mean(dim=1, keepdim=True).expand(batch_size, task_num, -1)  # (B, T, D)
        gate_input = torch.cat([task_emb.expand(batch_size, -1, -1), context], dim=-1)  # (B, T, 2D)
        experts = self.experts(emb)  # (B, E, H)
        expert_weights = self.expert_gate(gate_input.flatten(0, 1)).view(batch_size, task_num, -1)  # (B, T, E)
        task_fea = mix(expert_weights, experts)  # (B, T, H)
        # Critics run per task so that BatchNorm sees one task's batch, as in the original.
        critic_logits = torch.stack([self.critics(task_fea[:, t]).squeeze(-1) for t in range(task_num)], 1)  # (B, T, C)
        log_weights = F.log_softmax(self.critic_gate(gate_input), dim=-1)  # (B, T, C)
        log_p = torch.logsumexp(log_weights + F.logsigmoid(critic_logits), dim=-1)  # (B, T)
        log_not_p = torch.logsumexp(log_weights + F.logsigmoid(-critic_logits), dim=-1)  # (B, T)
        return log_p - log_not_p

    def task_losses(self, batches: Sequence[Batch]) -> TaskLosses:
        """Per task, the mean query loss after one inner step on each batch's support half."""
        losses = []
        for batch in batches:
            half = batch.size // 2
            support, query = batch.slice(0, half), batch.slice(half, batch.size)
            weight = self.task_embedding.weight
            support_loss = self.batch_task_loss(self.logits(support), support).mean()
            (grad,) = torch.autograd.grad(support_loss, weight, create_graph=True)
            adapted = weight - self.local_lr * grad  # (T, D)
            logits = self(query.categorical, query.numerical, query.bags, task_embedding=adapted)
            losses.append(self.batch_task_loss(logits, query))
        return TaskLosses(torch.stack(losses).mean(0))
