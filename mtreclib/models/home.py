"""HoME: hierarchy of multi-gate experts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.core.settings import ConfigError, search_choices, search_range, setting
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ExpertConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, Gate, MLPBank


@dataclass(frozen=True)
class HoMEConfig(ExpertConfig):
    """HoME's settings: ``expert_num`` global shared experts per level, plus group and task experts."""

    group_expert_num: int = setting(1, "experts of each task group per level (home)", minimum=1, search=search_range(1, 3))
    task_expert_num: int = setting(1, "task-specific experts of each task (stem, home)", minimum=1, search=search_range(1, 3))
    task_groups: tuple[int, ...] = setting(
        (), "task group of each task, e.g. 0,0,1 (home; none: the tasks that imply the same task form a group)", minimum=0
    )
    feature_gate_rank: int = setting(16, "rank of each expert's feature gate (home)", minimum=1, search=search_choices(8, 16, 32))

    def check(self) -> None:
        if len(self.bottom_dims) < 2:
            raise ConfigError(f"bottom_dims (--bottom-dims) needs two widths or more for HoME (meta level, task level), got {self.bottom_dims}")


def task_groups(schema: FeatureSchema, groups: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Each task's group, numbered 0 .. G-1 in order of first appearance.

    Given ``groups``, those; otherwise the tasks whose positives imply the same task form a group
    (after a click: like, comment, follow), and the tasks that imply none form another.
    """
    if groups and len(groups) != schema.task_num:
        raise ValueError(f"task_groups (--task-groups) gives {len(groups)} groups for the {schema.task_num} tasks {schema.task_names}")
    keys = list(groups) if groups else [schema.parent_task(t) for t in range(schema.task_num)]
    order = list(dict.fromkeys(keys))
    return tuple(order.index(key) for key in keys)


def _mixture(weights: torch.Tensor, experts: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Node n's weighted sum of its experts ``index[n]``: (B, N, K), (B, X, H), (N, K) -> (B, N, H)."""
    return torch.einsum("bnk,bnkh->bnh", weights, experts[:, index])


def _self_gate(logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid over one expert, softmax over several (HoME's self-gate): (B, N, K) -> (B, N, K)."""
    return torch.sigmoid(logits) if logits.shape[-1] == 1 else torch.softmax(logits, dim=-1)


@register_model("home")
class HoME(MultiTaskModel):
    """Two levels of normalised experts, global shared, per task group and per task, with feature and self gates.

    ``v`` is the (B, I) concatenated field embeddings; ``S = expert_num``, ``n_g = group_expert_num``,
    ``n_t = task_expert_num``; task ``t`` is in group ``g(t)``; ``Sum(w, {E})`` is ``sum_i w_i E_i``.
    Every expert is Linear, BatchNorm, Swish (expert normalisation), then dropout::

        meta level (widths bottom_dims[:-1]):  S shared experts, n_g per group, each reading its own
            v_i = v (x) 2 sigmoid(v B_i A_i)                  feature gate, B_i (I, r), A_i (r, I)
            m_g = Sum(softmax(W_g v), {shared, group g}) + Sum(self_g(v), {group g})
            m_s = Sum(softmax(W_s v), {all meta experts}) + Sum(self_s(v), {shared})
        task level (width bottom_dims[-1]):  S shared experts reading m_s, n_g per group reading
            m_g, n_t per task reading m_g(t)
            h_t = Sum(softmax(W_t m_g(t)), {shared, group g(t), task t}) + Sum(self_t(m_g(t)), {task t})
        y_t = tower_t(h_t)

    ``self(x)`` is a self-gate over the node's own experts: sigmoid with one expert, softmax with
    several. Each gate sees only the experts its node may use (the hierarchy mask).

    The paper has no public code; the decisions taken where it leaves room: the task groups are
    ``task_groups`` when given, else tasks that imply the same task share a group and the tasks
    that imply none form one (AliExpress: click, and conversion, one group each; no relations:
    one group) -- the paper groups Kuaishou's tasks by kind (watch time, interactions) by hand.
    The self-gate is read as the paper's residual sum over a node's own experts added to its
    mixture (not a skip of the previous level's representation). Feature gates privatise the
    experts' shared input, so they sit at the meta level only, where every expert reads ``v``;
    both LoRA factors are initialised like a Linear's (a zero factor would leave the other
    without gradient at the first step). The meta level also makes ``m_s``, the shared
    experts' input at the task level, as PLE's shared gate does. The task-level experts read one
    meta node's output each: the shared ones ``m_s``, a group's and its tasks' ``m_g``; some public
    reimplementations give a group's task-level experts the concatenation ``[m_s, m_g]`` instead
    (tests/test_model_home.py pins this library's reading by hand). Gates are a linear layer and
    softmax. The rank ``r`` (16) and the expert counts are not the paper's (it gives none for
    public use).

    Cost: the feature gates give every meta expert its own input, so their first products
    cannot be shared or split field by field as MMoE's are (docs/models/embedding-fusion-hierarchy.md).

    Reference: Wang, Cao, Fu, Gai, Zhou, "HoME: Hierarchy of Multi-Gate Experts for Multi-Task
    Learning at Kuaishou", 2024. https://arxiv.org/abs/2408.05430
    """

    Config = HoMEConfig
    paper = "Wang et al., HoME: Hierarchy of Multi-Gate Experts for Multi-Task Learning at Kuaishou, arXiv 2024"

    def __init__(self, schema: FeatureSchema, config: HoMEConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        self.groups = task_groups(schema, c.task_groups)
        task_num, group_num = self.task_num, max(self.groups) + 1
        shared, per_group, per_task, rank = c.expert_num, c.group_expert_num, c.task_expert_num, c.feature_gate_rank
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        input_dim, meta_dim, task_dim = self.embedding.output_dim, c.bottom_dims[-2], c.bottom_dims[-1]
        meta_num = shared + group_num * per_group  # shared first, then group by group
        self.feature_down = nn.Parameter(torch.empty(meta_num, input_dim, rank).uniform_(-1, 1) / math.sqrt(input_dim))
        self.feature_up = nn.Parameter(torch.empty(meta_num, rank, input_dim).uniform_(-1, 1) / math.sqrt(rank))
        self.meta_experts = MLPBank(input_dim, c.bottom_dims[:-1], meta_num, c.dropout, activation="swish")
        self.group_gates = Gate(input_dim, shared + per_group, gate_num=group_num)
        self.group_self_gates = Gate(input_dim, per_group, gate_num=group_num)
        self.shared_gate = Gate(input_dim, meta_num)
        self.shared_self_gate = Gate(input_dim, shared)
        # Task level: shared, then group by group, then task by task.
        self.task_experts = MLPBank(meta_dim, [task_dim], meta_num + task_num * per_task, c.dropout, activation="swish")
        self.task_gates = Gate(meta_dim, shared + per_group + per_task, gate_num=task_num)
        self.task_self_gates = Gate(meta_dim, per_task, gate_num=task_num)
        self.towers = MLPBank(task_dim, c.tower_dims, task_num, c.dropout, output_layer=True)

        def experts_of_group(g: int) -> list[int]:
            return list(range(shared + g * per_group, shared + (g + 1) * per_group))

        def experts_of_task(t: int) -> list[int]:
            return list(range(meta_num + t * per_task, meta_num + (t + 1) * per_task))

        index = {
            "group_allowed": [list(range(shared)) + experts_of_group(g) for g in range(group_num)],  # (G, S + n_g)
            "group_own": [experts_of_group(g) for g in range(group_num)],  # (G, n_g)
            "shared_own": [list(range(shared))],  # (1, S)
            "meta_all": [list(range(meta_num))],  # (1, meta_num)
            # Which meta node (0 shared, 1 + g group g) each task-level expert reads.
            "source": [0] * shared + [1 + g for g in range(group_num) for _ in range(per_group)]
            + [1 + g for g in self.groups for _ in range(per_task)],
            "task_node": [1 + g for g in self.groups],  # (T,)
            "task_allowed": [list(range(shared)) + experts_of_group(g) + experts_of_task(t) for t, g in enumerate(self.groups)],
            "task_own": [experts_of_task(t) for t in range(task_num)],  # (T, n_t)
        }
        for name, value in index.items():
            self.register_buffer(name, torch.tensor(value), persistent=False)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        v = self.embedding.concat(categorical, numerical, bags)  # (B, I)
        meta_num, rank = self.feature_down.shape[0], self.feature_down.shape[2]
        low = (v @ self.feature_down.permute(1, 0, 2).flatten(1)).view(-1, meta_num, rank)  # (B, n, r)
        feature_gates = 2 * torch.sigmoid(torch.bmm(low.transpose(0, 1), self.feature_up))  # (n, B, I)
        meta = self.meta_experts((v * feature_gates).transpose(0, 1))  # (B, n, H1), expert i read v_i
        groups = _mixture(self.group_gates(v), meta, self.group_allowed)  # (B, G, H1)
        groups = groups + _mixture(_self_gate(self.group_self_gates.logits(v)), meta, self.group_own)
        shared = _mixture(self.shared_gate(v), meta, self.meta_all)  # (B, 1, H1)
        shared = shared + _mixture(_self_gate(self.shared_self_gate.logits(v)), meta, self.shared_own)
        nodes = torch.cat([shared, groups], dim=1)  # (B, 1 + G, H1)
        experts = self.task_experts(nodes[:, self.source])  # (B, n2, H2)
        task_in = nodes[:, self.task_node]  # (B, T, H1) task t reads its group's m_g
        h = _mixture(self.task_gates(task_in), experts, self.task_allowed)  # (B, T, H2)
        h = h + _mixture(_self_gate(self.task_self_gates.logits(task_in)), experts, self.task_own)
        return self.towers(h).squeeze(-1)  # (B, T)
