"""The first layer over the field embeddings, computed field by field.

Every expert, bottom, tower and gate of the models that reads the concatenated field embeddings
starts with a Linear over them, and that product splits by field:
``x W = sum_f e_f W_f + (A x_num + a) W_num``. ``FieldEmbedding.flat`` returns the embeddings as
a ``FlatFields`` that forms the concatenation only when asked, and ``input_linear`` is the one
entry point the blocks call for their first product: over a ``FlatFields`` it takes the split
path, over a plain tensor it is an ordinary product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from mtreclib.nn.compiling import compiling

if TYPE_CHECKING:
    from mtreclib.nn.layers import FieldEmbedding


class DeferredFields:
    """Field embeddings of one batch side by side, (B, I), formed only when asked: ``FlatFields``,
    or views of it (``mtreclib.nn.field_views``). ``linear`` is their product with a weight."""

    @property
    def batch_size(self) -> int:
        raise NotImplementedError

    def tensor(self) -> torch.Tensor:
        """(B, I) the columns themselves."""
        raise NotImplementedError

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``tensor() @ weight + bias``: (I, H) weight, (H,) bias -> (B, H)."""
        raise NotImplementedError


def input_linear(x: torch.Tensor | DeferredFields, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight + bias`` for (B, I) ``x`` or ``DeferredFields`` of width I: (I, H) weight -> (B, H)."""
    if isinstance(x, DeferredFields):
        return x.linear(weight, bias)
    return x @ weight if bias is None else torch.addmm(bias, x, weight)


def batch_size_of(x: torch.Tensor | DeferredFields) -> int:
    return x.batch_size if isinstance(x, DeferredFields) else x.shape[0]


@dataclass(frozen=True)
class FieldTerm:
    """One D-wide block of a product's input: embedded field ``field`` (single-valued, then bags,
    then the numerical projection), times ``scale`` (B,) row by row when given, with no gradient
    reaching the embeddings when ``detached``."""

    field: int
    scale: torch.Tensor | None = None
    detached: bool = False


class FlatFields(DeferredFields):
    """The concatenated field embeddings of one batch, (B, E * D), formed only when asked.

    ``linear`` computes the product with a weight field by field, which does far less arithmetic
    than the dense product:

    - a single-valued field whose batch holds few distinct ids (most AliExpress fields have a
      few dozen) has the embeddings of those ids projected once (``E_f[ids] W_f``, distinct ids
      x H), and each row gathers its id's projection; one ``embedding_bag`` sums the gathered
      rows of all such fields;
    - the other fields' embeddings (and the pooled multi-valued fields) go through one dense
      product, and so do the raw numerical features, whose projection ``A`` is folded into the
      weight (``A^T W_num``).

    The result equals ``tensor() @ W + b`` up to float rounding, and so do all gradients.

    Per-field embeddings (fields of their own widths or sharing tables, ``FieldEmbedding.uniform``
    False) take the plain product: ``tensor()`` is the fields side by side, computed once (one
    lookup of sparse tables), and ``fields()`` stacks the same embeddings projected to D.

    With sparse tables (the torchrec backend) every embedding this batch needs comes from one
    lookup, made at the first need and shared by every product and by ``fields()``: the projected
    fields' distinct ids, the other fields' ids, the bags. One lookup, because each backward pass
    through it is an optimizer step of the fused tables.
    """

    def __init__(self, embedding: FieldEmbedding, categorical: torch.Tensor, numerical: torch.Tensor, bags: tuple = ()):
        self.embedding = embedding
        self.categorical = categorical
        self.numerical = numerical
        self.bags = bags
        self._fields: torch.Tensor | None = None
        self._pooled: torch.Tensor | None = None
        self._plan: _SplitPlan | None = None
        self._sparse: torch.Tensor | None = None
        self._concat: torch.Tensor | None = None
        self._projected: dict[int, torch.Tensor] | None = None

    @property
    def batch_size(self) -> int:
        return self.categorical.shape[0]

    def fields(self) -> torch.Tensor:
        """(B, E, D) field embeddings (computed once)."""
        if self._fields is None:
            layer = self.embedding
            if not layer.uniform:
                self._fields = layer.stack(self.tensor().split(list(layer.widths), dim=1))  # (B, E, D)
            elif layer.tables is None or not layer.split_products:
                self._fields = layer(self.categorical, self.numerical, self.bags)
            else:
                plan, sparse = self._plan_split(), self._sparse_lookup()
                field_num = len(layer.field_dims)
                columns = [sparse[plan.inverse[f], f] if f in plan.inverse else sparse[:, f] for f in range(field_num)]  # F x (B, D)
                parts = [torch.stack(columns, dim=1)] if columns else []  # (B, F, D)
                if self.bags:
                    parts.append(sparse[:, field_num:])  # (B, K, D)
                if layer.numerical is not None:
                    parts.append(layer.numerical(self.numerical).unsqueeze(1))  # (B, 1, D)
                self._fields = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self._fields

    def _sparse_lookup(self) -> torch.Tensor:
        """(B, F + K, D) the one lookup of the sparse tables (projected fields: distinct ids first)."""
        if self._sparse is None:
            plan = self._plan_split()
            self._sparse = self.embedding.sparse_fields(self.categorical, self.bags, plan.distinct)
        return self._sparse

    def tensor(self) -> torch.Tensor:
        """(B, E * D) concatenated field embeddings (B, sum of widths with per-field embeddings)."""
        if not self.embedding.uniform:
            if self._concat is None:
                self._concat = self.embedding.concat(self.categorical, self.numerical, self.bags)
            return self._concat
        return self.fields().flatten(1)

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``tensor() @ weight + bias``: (E * D, H) weight, (H,) bias -> (B, H)."""
        if not self.splits(weight):
            return input_linear(self.tensor(), weight, bias)
        return self._split_linear(weight, bias)

    def splits(self, weight: torch.Tensor) -> bool:
        """Whether a product with ``weight`` (I, H) is computed field by field."""
        macs = self.batch_size * weight.shape[0] * weight.shape[1]
        return self.embedding.split_products and self.embedding.uniform and macs >= self.embedding.min_split_macs

    def linear_terms(self, terms: list[FieldTerm], weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """The product of ``weight`` (len(terms) * D, H) with the terms side by side, field by field
        (the uniform layout): ``sum_k s_k * (e_{f_k} W_k)`` over the terms, plus ``bias``.

        A projected field's term gathers its ids' projections with the row's scale as the bag
        weight; the other fields' terms are scaled columns of one dense product; the numerical
        projection's term is folded into its weight, as in ``linear``.
        """
        layer = self.embedding
        plan = self._plan_split()
        blocks = weight.split(layer.embed_dim)  # len(terms) x (D, H)
        field_num, bag_num = len(layer.field_dims), len(self.bags)
        projected = self._projected_embeddings() if plan.projected else {}
        products, positions, scales, start = [], [], [], 0
        dense_columns, dense_blocks = [], []
        out = None if bias is None else bias.expand(self.batch_size, -1)
        for term, block in zip(terms, blocks):
            f = term.field
            if f >= field_num + bag_num:  # the numerical projection: (A x + a) W = x (A^T W) + a W
                numerical = layer.numerical
                a_weight, a_bias = (numerical.weight.detach(), numerical.bias.detach()) if term.detached else (numerical.weight, numerical.bias)
                part = torch.addmm(a_bias @ block, self.numerical, a_weight.t() @ block)  # (B, H)
                part = part if term.scale is None else part * term.scale.unsqueeze(1)
                out = part if out is None else out + part
            elif f in projected:
                rows = projected[f].detach() if term.detached else projected[f]  # (U_f, D)
                products.append(rows @ block)  # (U_f, H)
                positions.append(plan.inverse[f] + start)
                scales.append(term.scale)
                start += len(rows)
            else:
                column = self._dense_column(f)  # (B, D)
                column = column.detach() if term.detached else column
                dense_columns.append(column if term.scale is None else column * term.scale.unsqueeze(1))
                dense_blocks.append(block)
        if products:
            table = torch.cat(products)  # (U, H)
            weights = None
            if any(scale is not None for scale in scales):
                weights = torch.stack([torch.ones_like(positions[0], dtype=table.dtype) if s is None else s.to(table.dtype) for s in scales], dim=1)
            gathered = F.embedding_bag(torch.stack(positions, dim=1), table, mode="sum", per_sample_weights=weights)  # (B, H)
            out = gathered if out is None else out + gathered
        if dense_columns:
            columns = dense_columns[0] if len(dense_columns) == 1 else torch.cat(dense_columns, dim=1)
            product = columns @ torch.cat(dense_blocks)
            out = product if out is None else out + product
        if out is None:
            return weight.new_zeros(self.batch_size, weight.shape[1])
        return out

    def _projected_embeddings(self) -> dict[int, torch.Tensor]:
        """Projected field -> (U_f, D) the embeddings of its distinct ids, in ``plan.projected``'s
        order (looked up once per batch, shared by every product with it)."""
        if self._projected is None:
            layer, plan = self.embedding, self._plan_split()
            if layer.tables is None:
                embedded = layer.embedding(plan.rows).split(plan.counts)
            else:
                sparse = self._sparse_lookup()
                embedded = [sparse[:count, f] for f, count in zip(plan.projected, plan.counts)]
            self._projected = dict(zip(plan.projected, embedded))
        return self._projected

    def _dense_column(self, f: int) -> torch.Tensor:
        """(B, D) the embeddings of field ``f`` (single-valued or a bag) for every row, in the uniform layout."""
        layer = self.embedding
        field_num = len(layer.field_dims)
        if f >= field_num:
            k = f - field_num
            return self._pooled_bags()[:, k * layer.embed_dim : (k + 1) * layer.embed_dim]
        if layer.tables is None:
            return layer.embedding(self.categorical[:, f] + layer.offsets[f])
        return self._sparse_lookup()[:, f]

    def _pooled_bags(self) -> torch.Tensor | None:
        """(B, K * D) pooled multi-valued fields (computed once), or None without any."""
        if self._pooled is None and self.bags:
            if self.embedding.tables is not None:
                self._pooled = self._sparse_lookup()[:, len(self.embedding.field_dims) :].flatten(1)
            else:
                self._pooled = self.embedding.pool_bags(self.bags).flatten(1)
        return self._pooled

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
                plan.distinct[f] = distinct
                plan.inverse[f] = inverse
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
        blocks = weight.split(layer.embed_dim)  # E x (D, H); split, not slicing: one gradient buffer
        field_num, bag_num = len(layer.field_dims), len(self.bags)
        constant = bias
        folded = None
        if layer.numerical is not None:
            numerical_block = blocks[-1]
            # (A x + a) W_num = x (A^T W_num) + a W_num
            folded = layer.numerical.weight.t() @ numerical_block  # (M, H)
            constant = layer.numerical.bias @ numerical_block  # (H,)
            if bias is not None:
                constant = constant + bias
        if constant is None:
            constant = weight.new_zeros(weight.shape[1])
        if plan.projected:
            # Each projected field's distinct ids times its block of the weight, stacked; the
            # constant rides on the first field's rows, of which every sample gathers exactly one.
            embedded = list(self._projected_embeddings().values())  # F_projected x (U_f, D)
            first = plan.projected[0]
            products = [torch.addmm(constant, embedded[0], blocks[first])]
            products += [e @ blocks[f] for e, f in zip(embedded[1:], plan.projected[1:])]
            out = plan.gather_sum(torch.cat(products))  # (B, H)
        else:
            out = constant
        dense_columns, dense_blocks = [], []
        if plan.dense:
            if layer.tables is None:
                ids = self.categorical[:, plan.dense] + layer.offsets[plan.dense]  # (B, F_dense)
                dense_columns.append(layer.embedding(ids).flatten(1))  # (B, F_dense * D)
            else:
                dense_columns.append(self._sparse_lookup()[:, plan.dense].flatten(1))  # (B, F_dense * D)
            dense_blocks += [blocks[f] for f in plan.dense]
        if bag_num:
            dense_columns.append(self._pooled_bags())  # (B, K * D)
            dense_blocks += list(blocks[field_num : field_num + bag_num])
        if dense_columns:
            columns = dense_columns[0] if len(dense_columns) == 1 else torch.cat(dense_columns, dim=1)
            out = torch.addmm(out, columns, torch.cat(dense_blocks))
        if folded is None:
            return out if out.dim() == 2 else out.expand(self.batch_size, -1)
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
    distinct: dict[int, torch.Tensor] = field(default_factory=dict)  # projected field -> (U_f,) its distinct ids
    inverse: dict[int, torch.Tensor] = field(default_factory=dict)  # projected field -> (B,) each row's position among them
    rows: torch.Tensor | None = None
    bags: torch.Tensor | None = None  # (B, F_projected) each sample's rows among the stacked projections
    _transposed: tuple[torch.Tensor, torch.Tensor] | None = None

    def gather_sum(self, projections: torch.Tensor) -> torch.Tensor:
        """(U, H) stacked projections -> (B, H), each sample's rows summed (``embedding_bag`` over ``bags``)."""
        if torch.is_grad_enabled() and projections.requires_grad and not compiling():
            return _GatherSum.apply(projections, self)
        return F.embedding_bag(self.bags, projections, mode="sum")

    def transposed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``bags`` the other way round, as bags of samples: (B * F_projected,) sample indices
        grouped by row, and (U,) where each row's group starts (computed once per batch)."""
        if self._transposed is None:
            positions = self.bags.flatten()  # (B * F_projected,) sample-major
            order = torch.argsort(positions, stable=True)
            counts = torch.bincount(positions, minlength=len(self.rows))
            self._transposed = (order // self.bags.shape[1], counts.cumsum(0) - counts)
        return self._transposed


class _GatherSum(torch.autograd.Function):
    """``embedding_bag(bags, projections, mode="sum")`` whose backward is another bag sum.

    The gradient of row ``u`` is the sum of the output gradients of the samples that gathered it:
    an ``embedding_bag`` over the (B, H) output gradient with the samples grouped by row, which
    reads it row by row where PyTorch's own backward scatters into the rows (2.5x slower here).
    Each sample's row is read once per field, so the sum runs over ``COLUMNS`` columns at a time:
    a (2048, 512) block of the gradient stays in cache for its 16 reads (2x faster than the
    whole (2048, 4096) gradient at once).
    """

    COLUMNS = 512

    @staticmethod
    def forward(ctx, projections: torch.Tensor, plan: _SplitPlan) -> torch.Tensor:
        ctx.plan = plan
        return F.embedding_bag(plan.bags, projections, mode="sum")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        samples, starts = ctx.plan.transposed()
        step = _GatherSum.COLUMNS
        if grad.shape[1] <= step:
            return F.embedding_bag(samples, grad.contiguous(), starts, mode="sum"), None
        blocks = [F.embedding_bag(samples, grad[:, i : i + step].contiguous(), starts, mode="sum") for i in range(0, grad.shape[1], step)]
        return torch.cat(blocks, dim=1), None  # (U, H)

