"""DBMTL: deep Bayesian multi-target learning."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.core.settings import search_choices, setting
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ModelConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import MLP, FieldEmbedding, MLPBank


@dataclass(frozen=True)
class DBMTLConfig(ModelConfig):
    """DBMTL's settings: the relation networks' widths (EasyRec's example: 32)."""

    relation_dims: tuple[int, ...] = setting(
        (32,), "widths of each task's relation MLP over its tower and the relation outputs of the tasks it depends on (dbmtl)",
        minimum=1, nonempty=True, search=search_choices((16,), (32,), (64,)),
    )


def task_dependencies(schema: FeatureSchema) -> tuple[tuple[int, ...], ...]:
    """Per task, the earlier tasks it depends on: its parent under the schema's ``implies`` relation
    when the schema has one (a task without parent depends on none), else the previous task."""
    if schema.task_implies:
        return tuple(() if (p := schema.parent_task(t)) is None else (p,) for t in range(schema.task_num))
    return tuple(() if t == 0 else (t - 1,) for t in range(schema.task_num))


@register_model("dbmtl")
class DBMTL(MultiTaskModel):
    """A shared bottom, one tower per task, and a Bayesian network of relation layers between the tasks.

    Contract, with ``x`` the concatenated field embeddings, ``h = bottom(x)`` and ``D(t)`` the tasks
    task ``t`` depends on (its parents in the Bayesian network)::

        u_t = tower_t(h)                                      the task's own representation
        r_t = relation_t([u_t, r_s for s in D(t)])            MLP of relation_dims
        y_t = w_t . r_t + b_t                                 the logit

    so ``p(y_t | x, y_{D(t)})`` is modelled through the representations of the tasks it depends
    on, computed in task order.

    Decisions: the dependency graph is the schema's ``implies`` relation when it has one (a
    conversion depends on its click; a task without parent on nothing), else each task depends on
    the previous one; a task reads its dependencies' relation outputs ``r_s``, as EasyRec's DBMTL
    does (``relation_tower_names``); no bias towers (EasyRec's optional training-only extras);
    ``tower_dims`` empty gives each task the bottom's output. The towers are one ``MLPBank``, the
    output layers another; the relation MLPs run one per task (their inputs differ in width).

    Reference: Wang, Ji, Liu, Zhao, "Deep Bayesian Multi-Target Learning for Recommender
    Systems", arXiv 2019 (https://arxiv.org/abs/1902.09154); the architecture of Alibaba's
    EasyRec (easy_rec/python/model/dbmtl.py).
    """

    Config = DBMTLConfig
    paper = "Wang et al., Deep Bayesian Multi-Target Learning for Recommender Systems, arXiv 2019 (EasyRec's DBMTL)"

    def __init__(self, schema: FeatureSchema, config: DBMTLConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        self.dependencies = task_dependencies(schema)
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.bottom = MLP(self.embedding.output_dim, c.bottom_dims, c.dropout)
        self.towers = MLPBank(c.bottom_dims[-1], c.tower_dims, self.task_num, c.dropout) if c.tower_dims else None
        tower_dim = c.tower_dims[-1] if c.tower_dims else c.bottom_dims[-1]
        relation_dim = c.relation_dims[-1]
        self.relations = nn.ModuleList(
            MLP(tower_dim + relation_dim * len(deps), c.relation_dims, c.dropout) for deps in self.dependencies
        )
        self.outputs = MLPBank(relation_dim, (), self.task_num, c.dropout, output_layer=True)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        shared = self.bottom(emb)  # (B, H)
        towers = self.towers(shared).unbind(1) if self.towers is not None else [shared] * self.task_num  # T x (B, U)
        relations: list[torch.Tensor] = []
        for t, deps in enumerate(self.dependencies):
            inputs = [towers[t], *(relations[s] for s in deps)]
            relations.append(self.relations[t](torch.cat(inputs, dim=1) if len(inputs) > 1 else inputs[0]))  # (B, R)
        return self.outputs(torch.stack(relations, dim=1)).squeeze(-1)  # (B, T)
