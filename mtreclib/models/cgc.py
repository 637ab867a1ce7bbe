"""CGC: customized gate control, PLE's single extraction network."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.ple import PLEConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, Gate, MLPBank, mix


@register_model("cgc")
class CGC(MultiTaskModel):
    """Shared and task-specific experts; each task's gate mixes its own and the shared experts.

    Contract, with ``S = expert_num // 2`` shared experts ``E^s_j``, ``K = expert_num // 2``
    experts ``E^t_k`` per task (each an MLP of ``bottom_dims``) and ``x`` the concatenated
    field embeddings::

        g^t(x) = softmax(W^t x)                               over K + S experts
        y_t    = tower_t( sum_k g^t_k E^t_k(x) + sum_j g^t_{K+j} E^s_j(x) )

    One level, so no shared gate (PLE's shared gate only feeds the next level).

    Decisions: ``expert_num`` means what it means for PLE (the same ``PLEConfig``: half shared,
    half per task). The code is not PLE's level: PLE keeps one expert bank and one gate per task
    per level (its parameter layout must stay), while here all ``S + T K`` experts are one
    ``MLPBank`` and all task gates one ``Gate``, each a single product; each task's gate weights
    are scattered into a (T, S + T K) mixing matrix whose other tasks' columns are exactly zero,
    and one batched product mixes.

    Reference: Tang, Liu, Zhao, Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task
    Learning (MTL) Model for Personalized Recommendations", RecSys 2020 (Section 4.2, CGC).
    https://doi.org/10.1145/3383313.3412236
    """

    Config = PLEConfig
    paper = "Tang et al., Progressive Layered Extraction (PLE), RecSys 2020 (customized gate control)"

    def __init__(self, schema: FeatureSchema, config: PLEConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        shared_num = specific_num = c.expert_num // 2
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        # Experts in one bank: the shared ones first, then task 0's, task 1's, ...
        self.experts = MLPBank(self.embedding.output_dim, c.bottom_dims, shared_num + self.task_num * specific_num, c.dropout)
        self.gates = Gate(self.embedding.output_dim, specific_num + shared_num, gate_num=self.task_num)
        self.towers = MLPBank(c.bottom_dims[-1], c.tower_dims, self.task_num, c.dropout, output_layer=True)
        # Row t: the bank positions of task t's own experts, then of the shared ones (the gate's order, as in PLE).
        own = torch.arange(self.task_num).unsqueeze(1) * specific_num + shared_num + torch.arange(specific_num)  # (T, K)
        shared = torch.arange(shared_num).expand(self.task_num, -1)  # (T, S)
        self.register_buffer("expert_index", torch.cat([own, shared], dim=1), persistent=False)  # (T, K + S)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        experts = self.experts(emb)  # (B, S + T K, H)
        gates = self.gates(emb)  # (B, T, K + S)
        index = self.expert_index.expand(gates.shape[0], -1, -1)  # (B, T, K + S)
        weights = gates.new_zeros(gates.shape[0], self.task_num, experts.shape[1]).scatter(2, index, gates)  # (B, T, S + T K)
        return self.towers(mix(weights, experts)).squeeze(-1)  # (B, T)
