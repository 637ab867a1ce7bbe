"""PEPNet: parameter and embedding personalised network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtreclib.core.schema import ROLES, Bag, FeatureSchema
from mtreclib.core.settings import search_choices, setting
from mtreclib.models.base import MultiTaskModel
from mtreclib.models.config import ModelConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.field_views import FieldConcat, FieldView
from mtreclib.nn.layers import FieldEmbedding, MLPBank
from mtreclib.nn.products import DeferredFields, input_linear


@dataclass(frozen=True)
class PEPNetConfig(ModelConfig):
    """PEPNet's settings: which roles are the personalised prior, and what the gates read."""

    prior_roles: tuple[str, ...] = setting(
        ("user", "item", "author"), "field roles whose embeddings are the personalised prior (pepnet)", choices=ROLES, nonempty=True
    )
    gates_read_general: bool = setting(
        True,
        "gates that read only the prior fields; the paper's also read the stopped general embeddings and EPNet's output (pepnet)",
        flag="--no-gates-read-general",
        search=search_choices(True, False),
    )


class GateNU(nn.Module):
    """Gate neural units reading one input, ``delta_k = gamma * sigmoid(W2_k relu(W1_k x + b1_k) + b2_k)`` in (0, gamma).

    Unit ``k``'s hidden layer is as wide as its output (the paper does not fix it); the first
    layers of all units are one product. Input (B, I), a tensor or a view of the field embeddings; output one (B, output_dims[k]) per unit.
    """

    def __init__(self, input_dim: int, output_dims: Sequence[int], gamma: float = 2.0):
        super().__init__()
        self.output_dims = tuple(output_dims)
        self.gamma = gamma
        self.first = nn.Linear(input_dim, sum(self.output_dims))
        self.second = nn.ModuleList(nn.Linear(dim, dim) for dim in self.output_dims)

    def forward(self, x: torch.Tensor | DeferredFields) -> list[torch.Tensor]:
        hidden = torch.relu(input_linear(x, self.first.weight.t(), self.first.bias)).split(self.output_dims, dim=1)  # K x (B, O_k)
        return [self.gamma * torch.sigmoid(layer(h)) for layer, h in zip(self.second, hidden)]


@register_model("pepnet")
class PEPNet(MultiTaskModel):
    """Field embeddings scaled by EPNet; one tower per task whose hidden units PPNet scales.

    With ``E`` the (B, E, D) field embeddings, ``p`` the prior: the embeddings of the fields whose
    role is in ``prior_roles`` (by default the user, item and author fields), ``sg`` the
    stop-gradient and ``U`` a Gate NU (``gamma = 2``, the paper's, so every scale is in (0, 2))::

        delta_domain = U_ep(sg(E))                       (B, E)  one scale per field (EPNet)
        O_ep         = delta_domain (x) E                (B, E * D)
        delta_l      = U_pp,l(sg(p) ++ sg(O_ep))         (B, T, H_l)  for each hidden layer l = 1..L (PPNet)
        H_1          = f(W_0 O_ep + b_0)                 task t's tower, f = BatchNorm, ReLU, dropout
        H_{l+1}      = f(W_l (delta_l,t (x) H_l) + b_l)  l = 1 .. L-1
        y_t          = W_L (delta_L,t (x) H_L) + b_L     the logit

    Each task's tower has hidden widths ``bottom_dims + tower_dims`` (the depth of MMoE's expert
    and tower), then a Linear to the logit.

    Decisions: one domain (the datasets here have one), so EPNet's domain-side input ``E(F_d)``,
    the same for every row, is dropped (it would only add a bias to U_ep's first layer) and
    EPNet reads the stopped general embeddings; its scale is field-wise, one per embedded field.
    PPNet scales the hidden layers' units (the paper's "DNN hidden units"), not the towers'
    embedding input, which EPNet already scales. The prior fields here are general-input fields
    of the one embedding table (the paper has separate user, item and author ID embeddings), so
    they too reach the gates stopped: no gate moves an embedding, as the paper's ``sg(E)`` and
    ``sg(O_ep)`` intend. ``gates_read_general=False`` gives gates that read only the prior
    (EPNet ``U_ep(sg(p))``, PPNet ``U_pp,l(sg(p))``). A schema without fields of those roles is
    refused.

    Fields of their own widths (per-field embeddings) need nothing else: EPNet scales each field
    as a whole whatever its width, and the prior is the prior fields' embeddings side by side.

    Reference: Chang, Zhang, Hui, Leng, Niu, Song, Gai, "PEPNet: Parameter and Embedding
    Personalized Network for Infusing with Personalized Prior Information", KDD 2023.
    https://arxiv.org/abs/2302.01115
    """

    Config = PEPNetConfig
    paper = "Chang et al., PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior Information, KDD 2023"

    @classmethod
    def needed_roles(cls, config: PEPNetConfig) -> tuple[str, ...]:  # type: ignore[override]
        return config.prior_roles

    def __init__(self, schema: FeatureSchema, config: PEPNetConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        prior = sorted({i for role in c.prior_roles for i in schema.role_fields(role)})
        if not prior:
            raise ValueError(
                f"PEPNet needs fields whose role is {' or '.join(c.prior_roles)} (the `role:` key of the dataset spec), "
                f"and the data's fields have none"
            )
        self.register_buffer("prior_fields", torch.tensor(prior), persistent=False)
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.prior = prior
        widths = self.embedding.widths
        general_dim, prior_dim = self.embedding.output_dim, sum(widths[e] for e in prior)
        general = general_dim if c.gates_read_general else 0
        dims = (*c.bottom_dims, *c.tower_dims)
        self.epnet = GateNU(general or prior_dim, [self.embedding.field_num])
        self.ppnet = GateNU(prior_dim + general, [self.task_num * dim for dim in dims])
        layers = [MLPBank(general_dim, dims[:1], self.task_num, c.dropout)]
        layers += [MLPBank(i, [o], self.task_num, c.dropout) for i, o in zip(dims[:-1], dims[1:])]
        layers.append(MLPBank(dims[-1], [], self.task_num, c.dropout, output_layer=True))
        self.towers = nn.ModuleList(layers)  # [layer] -> bank of T task layers

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        # The inputs below are views of the field embeddings (E * D wide, or the sum of the fields'
        # widths): their products are computed field by field (mtreclib.nn.field_views).
        flat = self.embedding.flat(categorical, numerical, bags)
        prior = FieldView(flat, self.prior, detached=True)  # (B, R * D)
        general = FieldView(flat, detached=True) if self.config.gates_read_general else None  # (B, E * D)
        (scale,) = self.epnet(prior if general is None else general)  # (B, E)
        o_ep = FieldView(flat, scale=scale)  # (B, E * D) each field's columns times its scale
        gate_input = prior if general is None else FieldConcat([prior, FieldView(flat, scale=scale.detach(), detached=True)])
        deltas = self.ppnet(gate_input)  # L x (B, T * H_l)
        h = self.towers[0](o_ep)  # (B, T, H_1)
        for layer, delta in zip(self.towers[1:], deltas):
            h = layer(delta.view_as(h) * h)  # (B, T, H_{l+1})
        return h.squeeze(-1)  # (B, T)
