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

    ``forward`` returns the field embeddings; ``flat`` returns their concatenation as a
    ``FlatFields``, which the first layer of every MLP, bank and gate multiplies field by field
    (see ``FlatFields.linear``) instead of forming the (B, (F + 1) * D) matrix.

    Args:
        field_dims: vocabulary size of each categorical field.
        numerical_num: number of numerical features.
        embed_dim: embedding size D.

    Attributes:
        split_products: compute products with ``flat``'s output field by field (the default);
            False forms the concatenation and multiplies it, the straightforward computation.
            Both give the same result up to float rounding.
        projection_ratio: in a split product, a field whose vocabulary is at most this share of
            the batch size is projected whole and its rows gathered (see ``FlatFields.linear``).
    """

    split_products: bool = True
    projection_ratio: float = 0.75

    def __init__(self, field_dims: Sequence[int], numerical_num: int, embed_dim: int):
        super().__init__()
        self.field_dims = tuple(int(d) for d in field_dims)
        self.embedding = nn.Embedding(sum(self.field_dims), embed_dim)
        nn.init.xavier_uniform_(self.embedding.weight)
        offsets = torch.tensor([0, *self.field_dims[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.numerical = nn.Linear(numerical_num, embed_dim)
        self.field_num = len(self.field_dims) + 1
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

    def flat(self, categorical: torch.Tensor, numerical: torch.Tensor) -> FlatFields:
        """(B, F) int64 ids and (B, M) floats -> the (B, (F + 1) * D) concatenated embeddings, deferred."""
        return FlatFields(self, categorical, numerical)


class FlatFields:
    """The concatenated field embeddings of one batch, (B, (F + 1) * D), formed only when asked.

    Every expert, bottom and gate of the models starts with a Linear over this concatenation,
    and that product splits by field: ``x W = sum_f e_f W_f + (A x_num + a) W_num``. ``linear``
    computes it so, which does far less arithmetic than the dense product:

    - a field whose vocabulary is small next to the batch is projected whole once
      (``E_f W_f``, vocabulary x H) and the rows of the batch's ids are gathered and summed
      (one ``embedding_bag`` over all such fields);
    - the other fields' embeddings and the raw numerical features (whose projection ``A`` is
      folded into the weight, ``A^T W_num``) go through one dense product.

    The result equals ``tensor() @ W + b`` up to float rounding, and so do all gradients.
    """

    def __init__(self, embedding: FieldEmbedding, categorical: torch.Tensor, numerical: torch.Tensor):
        self.embedding = embedding
        self.categorical = categorical
        self.numerical = numerical
        self._fields: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.categorical.shape[0]

    def fields(self) -> torch.Tensor:
        """(B, F + 1, D) field embeddings (computed once)."""
        if self._fields is None:
            self._fields = self.embedding(self.categorical, self.numerical)
        return self._fields

    def tensor(self) -> torch.Tensor:
        """(B, (F + 1) * D) concatenated field embeddings."""
        return self.fields().flatten(1)

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``tensor() @ weight + bias``: ((F + 1) * D, H) weight, (H,) bias -> (B, H)."""
        if not self.embedding.split_products:
            x = self.tensor()
            return x @ weight if bias is None else torch.addmm(bias, x, weight)
        return self._split_linear(weight, bias)

    def _split_linear(self, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        layer = self.embedding
        blocks = weight.split(layer.embed_dim)  # F + 1 x (D, H); split, not slicing: one gradient buffer
        numerical_block = blocks[-1]
        # (A x + a) W_num = x (A^T W_num) + a W_num
        folded = layer.numerical.weight.t() @ numerical_block  # (M, H)
        constant = layer.numerical.bias @ numerical_block  # (H,)
        if bias is not None:
            constant = constant + bias
        limit = layer.projection_ratio * self.batch_size
        projected = [f for f, dim in enumerate(layer.field_dims) if dim <= limit]
        dense = [f for f, dim in enumerate(layer.field_dims) if dim > limit]
        tables = layer.embedding.weight.split(layer.field_dims)  # F x (V_f, D)

        dense_inputs = [self.numerical]
        dense_weights = [folded]
        if dense:
            ids = self.categorical[:, dense] + layer.offsets[dense]  # (B, F_dense)
            dense_inputs.insert(0, layer.embedding(ids).flatten(1))  # (B, F_dense * D)
            dense_weights[:0] = [blocks[f] for f in dense]
        x = torch.cat(dense_inputs, dim=1) if len(dense_inputs) > 1 else dense_inputs[0]  # (B, F_dense * D + M)
        w = torch.cat(dense_weights) if len(dense_weights) > 1 else dense_weights[0]  # (F_dense * D + M, H)
        if not projected:
            return torch.addmm(constant, x, w)
        # The constant rides on the first projected field's rows: every sample gathers exactly one.
        first = projected[0]
        projections = [torch.addmm(constant, tables[first], blocks[first])]
        projections += [tables[f] @ blocks[f] for f in projected[1:]]
        table = torch.cat(projections)  # (sum of projected V_f, H)
        starts = torch.tensor([layer.field_dims[f] for f in projected[:-1]], device=table.device)
        starts = torch.cat([starts.new_zeros(1), starts.cumsum(0)])
        ids = self.categorical[:, projected] + starts  # (B, F_projected)
        gathered = F.embedding_bag(ids, table, mode="sum")  # (B, H)
        return torch.addmm(gathered, x, w)


class MLP(nn.Sequential):
    """Blocks of Linear, BatchNorm1d, ReLU, Dropout; optionally a final Linear to one logit.

    Input (B, input_dim) or ``FlatFields`` of that width; output (B, dims[-1]), or (B, 1) with
    ``output_layer``.
    """

    def __init__(self, input_dim: int, dims: Sequence[int], dropout: float, output_layer: bool = False):
        layers: list[nn.Module] = []
        for dim in dims:
            layers += [nn.Linear(input_dim, dim), nn.BatchNorm1d(dim), nn.ReLU(), nn.Dropout(dropout)]
            input_dim = dim
        if output_layer:
            layers.append(nn.Linear(input_dim, 1))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor | FlatFields) -> torch.Tensor:
        modules = iter(self)
        if isinstance(x, FlatFields):
            first = next(modules)
            x = x.linear(first.weight.t(), first.bias)  # (B, dims[0])
        for module in modules:
            x = module(x)
        return x


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

    def first_weight(self) -> torch.Tensor:
        """The first layer's weights of all members side by side: (input_dim, n * dims[0])."""
        weight = self.weights[0]  # (n, I, O)
        return weight.permute(1, 0, 2).reshape(weight.shape[1], -1)

    def forward(self, x: torch.Tensor | FlatFields) -> torch.Tensor:
        """(B, input_dim) or ``FlatFields``, shared by all members, or (B, n, input_dim), one row
        per member, -> (B, n, output_dim)."""
        batch_size = x.batch_size if isinstance(x, FlatFields) else x.shape[0]
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if layer == 0 and isinstance(x, FlatFields):
                x = x.linear(self.first_weight(), bias.flatten())  # (B, n * O)
            elif x.dim() == 2:
                # One product over all members' columns: (B, I) @ (I, n * O).
                x = torch.addmm(bias.flatten(), x, weight.permute(1, 0, 2).flatten(1))  # (B, n * O)
            else:
                x = torch.baddbmm(bias.unsqueeze(1), x.transpose(0, 1), weight).transpose(0, 1)  # (B, n, O)
            if layer < self.hidden_num:
                x = self.norms[layer](x.reshape(batch_size, -1))  # (B, n * O)
                x = self.dropout(F.relu(x))
            if x.dim() == 2:
                x = x.unflatten(1, (self.n, -1))  # (B, n, O)
        return x


class Gate(nn.Module):
    """``gate_num`` softmax gates over ``expert_num`` experts, computed as one product.

    Input (B, input_dim) or ``FlatFields``; output (B, gate_num, expert_num), each row summing
    to one.
    """

    def __init__(self, input_dim: int, expert_num: int, gate_num: int = 1):
        super().__init__()
        self.linear = nn.Linear(input_dim, gate_num * expert_num)
        self.gate_num = gate_num
        self.expert_num = expert_num

    def forward(self, x: torch.Tensor | FlatFields) -> torch.Tensor:
        logits = x.linear(self.linear.weight.t(), self.linear.bias) if isinstance(x, FlatFields) else self.linear(x)
        logits = logits.view(-1, self.gate_num, self.expert_num)  # (B, G, E)
        return torch.softmax(logits, dim=-1)


def set_split_products(module: nn.Module, enabled: bool) -> None:
    """Turn the field-by-field products of every ``FieldEmbedding`` inside ``module`` on or off."""
    for layer in module.modules():
        if isinstance(layer, FieldEmbedding):
            layer.split_products = enabled


def mix(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sums of expert outputs: (B, G, E) and (B, E, H) -> (B, G, H)."""
    return torch.bmm(gates, experts)
