"""Building blocks shared by the models: field embedding, MLP, MLP bank, gate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
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
        projection_ratio: in a split product, a field whose distinct ids in the batch number at
            most this share of the batch size is projected and gathered (``FlatFields.linear``);
            the others are multiplied densely.
        min_split_macs: products smaller than this (batch x input x output multiply-adds) are
            computed densely: there the split's fixed costs (a few dozen small operations)
            outweigh the arithmetic it saves.
    """

    split_products: bool = True
    projection_ratio: float = 0.75
    min_split_macs: int = 2**25

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

    - a field whose batch holds few distinct ids (most AliExpress fields have a few dozen) has
      the embeddings of those ids projected once (``E_f[ids] W_f``, distinct ids x H), and each
      row gathers its id's projection; one ``embedding_bag`` sums the gathered rows of all such
      fields;
    - the other fields' embeddings go through one dense product, and so do the raw numerical
      features, whose projection ``A`` is folded into the weight (``A^T W_num``).

    The result equals ``tensor() @ W + b`` up to float rounding, and so do all gradients.
    """

    def __init__(self, embedding: FieldEmbedding, categorical: torch.Tensor, numerical: torch.Tensor):
        self.embedding = embedding
        self.categorical = categorical
        self.numerical = numerical
        self._fields: torch.Tensor | None = None
        self._plan: _SplitPlan | None = None

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
        macs = self.batch_size * weight.shape[0] * weight.shape[1]
        if not self.embedding.split_products or macs < self.embedding.min_split_macs:
            x = self.tensor()
            return x @ weight if bias is None else torch.addmm(bias, x, weight)
        return self._split_linear(weight, bias)

    def _plan_split(self) -> _SplitPlan:
        """Which fields to project and which to multiply densely, decided once per batch from
        the number of distinct ids in each field and shared by every product with this batch."""
        if self._plan is None:
            layer = self.embedding
            limit = layer.projection_ratio * self.batch_size
            plan = _SplitPlan()
            rows, positions, start = [], [], 0
            for f in range(len(layer.field_dims)):
                distinct, inverse = torch.unique(self.categorical[:, f], return_inverse=True)
                if len(distinct) > limit:
                    plan.dense.append(f)
                    continue
                plan.projected.append(f)
                plan.counts.append(len(distinct))
                rows.append(distinct + layer.offsets[f])
                positions.append(inverse + start)
                start += len(distinct)
            if rows:
                plan.rows = torch.cat(rows)  # (U,) global ids of the projected rows
                plan.bags = torch.stack(positions, dim=1)  # (B, F_projected) each sample's rows
            self._plan = plan
        return self._plan

    def _split_linear(self, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        layer = self.embedding
        plan = self._plan_split()
        blocks = weight.split(layer.embed_dim)  # F + 1 x (D, H); split, not slicing: one gradient buffer
        numerical_block = blocks[-1]
        # (A x + a) W_num = x (A^T W_num) + a W_num
        folded = layer.numerical.weight.t() @ numerical_block  # (M, H)
        constant = layer.numerical.bias @ numerical_block  # (H,)
        if bias is not None:
            constant = constant + bias
        if plan.projected:
            # Each projected field's distinct ids times its block of the weight, stacked; the
            # constant rides on the first field's rows, of which every sample gathers exactly one.
            embedded = layer.embedding(plan.rows).split(plan.counts)  # F_projected x (U_f, D)
            first = plan.projected[0]
            products = [torch.addmm(constant, embedded[0], blocks[first])]
            products += [e @ blocks[f] for e, f in zip(embedded[1:], plan.projected[1:])]
            out = F.embedding_bag(plan.bags, torch.cat(products), mode="sum")  # (B, H)
        else:
            out = constant
        if plan.dense:
            ids = self.categorical[:, plan.dense] + layer.offsets[plan.dense]  # (B, F_dense)
            columns = layer.embedding(ids).flatten(1)  # (B, F_dense * D)
            out = torch.addmm(out, columns, torch.cat([blocks[f] for f in plan.dense]))
        # The numerical features need no gradient: a product of their own spares computing one,
        # accumulated in place when there is a (B, H) result to accumulate into.
        if out.dim() == 2 and out.dtype == self.numerical.dtype == folded.dtype:
            return out.addmm_(self.numerical, folded)
        return torch.addmm(out, self.numerical, folded)


@dataclass
class _SplitPlan:
    """How ``FlatFields.linear`` splits its product for one batch."""

    projected: list[int] = field(default_factory=list)
    dense: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)  # distinct ids of each projected field
    rows: torch.Tensor | None = None
    bags: torch.Tensor | None = None


def dropout_mask(shape: torch.Size, keep: float, device: torch.device) -> torch.Tensor:
    """A bool tensor of ``shape``, each element True with probability ``keep`` (to within 2^-24).

    On CPU, PyTorch draws dropout masks one element at a time through its Mersenne Twister
    (MKL's vectorised generator is used on Intel CPUs only): for the experts' (2048, 4096)
    activations that takes longer than their matrix products. Here NumPy's vectorised PCG64
    draws the uniforms, seeded from PyTorch's generator, so ``torch.manual_seed`` still decides
    every mask. Other devices use ``torch.rand``.
    """
    if device.type != "cpu":
        return torch.rand(shape, device=device) < keep
    seed = int(torch.randint(0, 2**63 - 1, ()))
    uniform = np.random.Generator(np.random.PCG64(seed)).random(tuple(shape), dtype=np.float32)
    return torch.from_numpy(uniform < keep)


class _ReluDropout(torch.autograd.Function):
    """``dropout(relu(x))`` in fewer passes over memory, saving only its output for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = 1.0 - p
        out = torch.relu(x).mul_(dropout_mask(x.shape, keep, x.device)).mul_(1.0 / keep)
        ctx.save_for_backward(out)
        ctx.scale = 1.0 / keep
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        # out > 0 exactly where x > 0 and the element was kept.
        return grad.mul(out > 0).mul_(ctx.scale), None


def relu_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(F.relu(x), p, training)``: the same distribution, faster masks on CPU."""
    if not training or p == 0.0:
        return F.relu(x)
    if p >= 1.0:
        return torch.zeros_like(x)
    if _compiling():
        return F.dropout(F.relu(x), p, training=True)  # the compiler fuses both, with its own generator
    return _ReluDropout.apply(x, p)


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


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
        modules = list(self)
        i = 0
        if isinstance(x, FlatFields):
            x = x.linear(modules[0].weight.t(), modules[0].bias)  # (B, dims[0])
            i = 1
        while i < len(modules):
            module, following = modules[i], modules[i + 1] if i + 1 < len(modules) else None
            if isinstance(module, nn.ReLU) and isinstance(following, nn.Dropout):
                x = relu_dropout(x, following.p, self.training)
                i += 2
            else:
                x = module(x)
                i += 1
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
                x = relu_dropout(x, self.dropout.p, self.training)
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
