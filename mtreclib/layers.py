"""Building blocks shared by the models: field embedding, MLP, MLP bank, gate."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FieldEmbedding(nn.Module):
    """The shared input of every model, as in the original MTReclib.

    Each categorical field is embedded through one table with per-field offsets; the numerical
    features go through one ``Linear(numerical_num, embed_dim)`` and count as one more field.

    Args:
        field_dims: vocabulary size of each categorical field.
        numerical_num: number of numerical features.
        embed_dim: embedding size D.
    """

    def __init__(self, field_dims: Sequence[int], numerical_num: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(sum(field_dims), embed_dim)
        nn.init.xavier_uniform_(self.embedding.weight)
        offsets = torch.tensor([0, *field_dims[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.numerical = nn.Linear(numerical_num, embed_dim)
        self.field_num = len(field_dims) + 1
        self.embed_dim = embed_dim

    @property
    def output_dim(self) -> int:
        """Width of the flattened output, ``(F + 1) * D``."""
        return self.field_num * self.embed_dim

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor) -> torch.Tensor:
        """(B, F) int64 ids and (B, M) floats -> (B, F + 1, D) field embeddings."""
        categorical_emb = self.embedding(categorical + self.offsets)  # (B, F, D)
        numerical_emb = self.numerical(numerical).unsqueeze(1)  # (B, 1, D)
        return torch.cat([categorical_emb, numerical_emb], dim=1)


class MLP(nn.Sequential):
    """Blocks of Linear, BatchNorm1d, ReLU, Dropout; optionally a final Linear to one logit.

    Input (B, input_dim); output (B, dims[-1]), or (B, 1) with ``output_layer``.
    """

    def __init__(self, input_dim: int, dims: Sequence[int], dropout: float, output_layer: bool = False):
        layers: list[nn.Module] = []
        for dim in dims:
            layers += [nn.Linear(input_dim, dim), nn.BatchNorm1d(dim), nn.ReLU(), nn.Dropout(dropout)]
            input_dim = dim
        if output_layer:
            layers.append(nn.Linear(input_dim, 1))
        super().__init__(*layers)


class MLPBank(nn.Module):
    """``n`` independent MLPs of one shape, run together as batched matrix products.

    Member ``i`` computes exactly what ``MLP(input_dim, dims, dropout, output_layer)`` with its own
    weights would: its own Linear weights, and BatchNorm statistics per member and channel (one
    ``BatchNorm1d(n * dim)`` over the stacked channels). Each weight is initialised as
    ``nn.Linear`` initialises it, from the member's fan-in. Only the dropout masks are drawn
    differently from ``n`` separate modules.

    Args:
        input_dim: width of each member's input.
        dims: hidden widths, as for ``MLP``.
        n: number of members (experts, towers, critics).
        dropout: dropout after every hidden block.
        output_layer: end every member with a Linear to one logit.
    """

    def __init__(self, input_dim: int, dims: Sequence[int], n: int, dropout: float, output_layer: bool = False):
        super().__init__()
        widths = [input_dim, *dims] + ([1] if output_layer else [])
        self.n = n
        self.hidden_num = len(dims)
        self.output_dim = widths[-1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, fan_out).uniform_(-bound, bound)))
        self.norms = nn.ModuleList(nn.BatchNorm1d(n * dim) for dim in dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, input_dim), shared by all members, or (B, n, input_dim), one row per member,
        -> (B, n, output_dim)."""
        batch_size = x.shape[0]
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if x.dim() == 2:
                # One product over all members' columns: (B, I) @ (I, n * O).
                x = torch.einsum("bi,nio->bno", x, weight) + bias  # (B, n, O)
            else:
                x = torch.einsum("bni,nio->bno", x, weight) + bias  # (B, n, O)
            if layer < self.hidden_num:
                x = self.norms[layer](x.reshape(batch_size, -1)).view(batch_size, self.n, -1)
                x = self.dropout(F.relu(x))
        return x


class Gate(nn.Module):
    """``gate_num`` softmax gates over ``expert_num`` experts, computed as one product.

    Input (B, input_dim); output (B, gate_num, expert_num), each row summing to one.
    """

    def __init__(self, input_dim: int, expert_num: int, gate_num: int = 1):
        super().__init__()
        self.linear = nn.Linear(input_dim, gate_num * expert_num)
        self.gate_num = gate_num
        self.expert_num = expert_num

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x).view(-1, self.gate_num, self.expert_num)  # (B, G, E)
        return torch.softmax(logits, dim=-1)


def mix(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sums of expert outputs: (B, G, E) and (B, E, H) -> (B, G, H)."""
    return torch.bmm(gates, experts)
