"""Building blocks shared by the models: field embedding, MLP, MLP bank, gate.

The field-by-field first products live in ``products`` (``FlatFields``, ``input_linear``) and the
fast dropout in ``dropout``; the blocks here call them and know nothing of how they work.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn

from mtreclib.core.schema import Bag, BagField, FeatureSchema
from mtreclib.nn.dropout import relu_dropout
from mtreclib.nn.products import DeferredFields, FlatFields, batch_size_of, input_linear

# Where FieldEmbedding puts its dense tables while a model is built: "meta" (``deferred_tables``)
# when another backend will hold them, so that a table of 10^8 ids is never allocated twice.
_TABLE_DEVICE: ContextVar[str | None] = ContextVar("table_device", default=None)


@contextmanager
def deferred_tables() -> Iterator[None]:
    """Build models whose ``FieldEmbedding`` tables take no memory (meta tensors), for a backend
    that brings its own (``mtreclib.embeddings.use_torchrec``)."""
    token = _TABLE_DEVICE.set("meta")
    try:
        yield
    finally:
        _TABLE_DEVICE.reset(token)


class FieldEmbedding(nn.Module):
    """The shared input of every model, as in the original MTReclib, plus multi-valued fields.

    Each single-valued categorical field is embedded through one table with per-field offsets;
    each multi-valued field (bag) through a second table, its values' embeddings pooled (mean
    or sum, weighted when it has weights) into one embedding; the numerical features go
    through one ``Linear(numerical_num, embed_dim)`` and count as one more field when there are
    any. Fields come in the schema's order: single-valued, bags, numerical.

    ``forward`` returns the field embeddings; ``flat`` returns their concatenation as a
    ``FlatFields``, which the first layer of every MLP, bank and gate multiplies field by field
    instead of forming the (B, E * D) matrix.

    Per-field embeddings (a schema whose fields set their own ``embedding_dim`` or
    ``shared_with``): every table is an ``nn.Embedding`` of its own width in ``field_tables``,
    named after the field that owns it (``field_<i>`` or ``bag_<k>``), and a field that shares a
    table looks its ids up there (one parameter, a gradient from both fields). The fields then
    have unequal widths ``widths``: ``flat`` concatenates them (``output_dim`` is their sum; the
    split products are the uniform layout's, so the product is the plain one), and ``forward``
    stacks them as (B, E, D) only when built with ``stacked=True``, which adds one bias-free
    ``Linear(D_e, D)`` per field whose width is not ``embed_dim`` (the models that compare or
    average fields, MetaHeac); otherwise it refuses in one line.

    The tables are two ``nn.Embedding``s (the dense backend) unless ``attach_tables`` hands them
    to a sparse-lookup module (the torchrec backend, ``mtreclib.embeddings``): one table per
    field, looked up once per forward pass, updated by its own fused optimizer in the backward
    pass. The state dict has the same weights either way; each layout loads into the other.

    Args:
        field_dims: vocabulary size of each single-valued field.
        numerical_num: number of numerical features (0: no numerical field).
        embed_dim: embedding size D (every field's unless ``embedding_dims`` says otherwise).
        bags: the multi-valued fields.
        embedding_dims: per categorical field (single-valued, then bags), its width; None: all D.
        table_owners: per categorical field, the position of the field whose table it uses
            (itself unless it shares); None: every field its own.
        stacked: fields of unequal widths can be stacked (projected to D) by ``forward``.

    Attributes:
        split_products: compute products with ``flat``'s output field by field (the default);
            False forms the concatenation and multiplies it, the straightforward computation.
            Both give the same result up to float rounding.
        projection_ratio: in a split product, a field whose distinct ids in the batch number at
            most this share of the batch size is projected and gathered; the others are
            multiplied densely.
        min_split_macs: products smaller than this (batch x input x output multiply-adds) are
            computed densely: there the split's fixed costs (a few dozen small operations)
            outweigh the arithmetic it saves.
    """

    split_products: bool = True
    projection_ratio: float = 0.75
    min_split_macs: int = 2**25

    def __init__(
        self,
        field_dims: Sequence[int],
        numerical_num: int,
        embed_dim: int,
        bags: Sequence[BagField] = (),
        embedding_dims: Sequence[int] | None = None,
        table_owners: Sequence[int] | None = None,
        stacked: bool = False,
    ):
        super().__init__()
        self.field_dims = tuple(int(d) for d in field_dims)
        self.bag_fields = tuple(bags)
        sparse_num = len(self.field_dims) + len(self.bag_fields)
        dims = tuple(embedding_dims) if embedding_dims is not None else (embed_dim,) * sparse_num
        owners = tuple(table_owners) if table_owners is not None else tuple(range(sparse_num))
        self.uniform = all(d == embed_dim for d in dims) and owners == tuple(range(sparse_num))
        self.widths = (*dims, *((embed_dim,) if numerical_num else ()))  # per embedded field
        self.field_num = sparse_num + (1 if numerical_num else 0)
        self.embed_dim = embed_dim
        self.tables: SparseTables | None = None
        self.spec_names: tuple[str, ...] = ()
        self._register_load_state_dict_pre_hook(_convert_table_layout, with_module=True)
        if not self.uniform:
            self._build_field_tables(dims, owners, numerical_num, stacked)
            return
        device = _TABLE_DEVICE.get()
        self.embedding = nn.Embedding(max(sum(self.field_dims), 1), embed_dim, device=device)
        nn.init.xavier_uniform_(self.embedding.weight)
        offsets = torch.tensor([0, *self.field_dims[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        if self.bag_fields:
            dims = [b.vocab_size for b in self.bag_fields]
            self.bag_embedding = nn.Embedding(sum(dims), embed_dim, device=device)
            nn.init.xavier_uniform_(self.bag_embedding.weight)
            self.register_buffer("bag_offsets", torch.tensor([0, *dims[:-1]], dtype=torch.long).cumsum(0), persistent=False)
        self.numerical = nn.Linear(numerical_num, embed_dim) if numerical_num else None

    def _build_field_tables(self, dims: tuple[int, ...], owners: tuple[int, ...], numerical_num: int, stacked: bool) -> None:
        """The per-field layout: one table per owning field, of its width; projections when stacked."""
        device = _TABLE_DEVICE.get()
        self.owners = owners
        rows = (*self.field_dims, *(b.vocab_size for b in self.bag_fields))
        names = self.feature_names()
        self.field_tables = nn.ModuleDict()
        for e in sorted(set(owners)):
            table = nn.Embedding(rows[e], dims[e], device=device)
            nn.init.xavier_uniform_(table.weight)
            self.field_tables[names[e]] = table
        self.numerical = nn.Linear(numerical_num, self.embed_dim) if numerical_num else None
        self.projections = None
        if stacked:
            self.projections = nn.ModuleDict(
                {str(e): nn.Linear(width, self.embed_dim, bias=False) for e, width in enumerate(self.widths) if width != self.embed_dim}
            )

    def attach_tables(self, tables: SparseTables) -> None:
        """Hand the tables to ``tables`` (one per field, in the schema's order); the dense tables'
        weights, unless they are meta tensors, are copied in first."""
        if not self.uniform:
            dense = {f"field_tables.{name}.weight": table.weight for name, table in self.field_tables.items()}
            if not next(iter(dense.values())).is_meta:
                tables.load_field_weights(self.split_dense(dense))
            del self.field_tables
            self.tables = tables
            return
        dense = {"embedding.weight": self.embedding.weight}
        if self.bag_fields:
            dense["bag_embedding.weight"] = self.bag_embedding.weight
        if not self.embedding.weight.is_meta:
            tables.load_field_weights(self.split_dense(dense))
        del self.embedding
        if self.bag_fields:
            del self.bag_embedding
        self.tables = tables

    def feature_names(self) -> list[str]:
        """The categorical fields' keys, in field order: ``field_0 ..`` then ``bag_0 ..``."""
        return [f"field_{i}" for i in range(len(self.field_dims))] + [f"bag_{k}" for k in range(len(self.bag_fields))]

    def table_names(self) -> list[str]:
        """The tables' names, in field order: each named after the field that owns it (every field
        in the uniform layout; a field that shares a table has none of its own)."""
        names = self.feature_names()
        return [names[t] for t in self._table_fields()]

    def _table_fields(self) -> list[int]:
        """The positions of the fields that own a table, in field order."""
        return list(range(len(self.field_dims) + len(self.bag_fields))) if self.uniform else sorted(set(self.owners))

    def table_features(self) -> list[list[str]]:
        """Per table (``table_names``), the fields that look their ids up in it."""
        names = self.feature_names()
        if self.uniform:
            return [[name] for name in names]
        return [[names[e] for e, owner in enumerate(self.owners) if owner == t] for t in self._table_fields()]

    def table_rows(self) -> list[int]:
        """Per table, its vocabulary size."""
        rows = (*self.field_dims, *(b.vocab_size for b in self.bag_fields))
        return [rows[t] for t in self._table_fields()]

    def table_dims(self) -> list[int]:
        """Per table, its width."""
        return [self.widths[t] for t in self._table_fields()]

    def dense_keys(self) -> list[str]:
        """The dense layout's table weights in the state dict (without the module's prefix)."""
        if not self.uniform:
            return [f"field_tables.{name}.weight" for name in self.table_names()]
        return ["embedding.weight"] + (["bag_embedding.weight"] if self.bag_fields else [])

    def split_dense(self, dense: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The per-field tables of the dense layout's two weights: F single-valued, then K bags."""
        if not self.uniform:
            return [dense[key] for key in self.dense_keys()]
        parts = list(dense["embedding.weight"][: sum(self.field_dims)].split(self.field_dims)) if self.field_dims else []
        if self.bag_fields:
            parts += list(dense["bag_embedding.weight"].split([b.vocab_size for b in self.bag_fields]))
        return parts

    def join_fields(self, tables: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The dense layout's two weights from the per-field tables (``split_dense`` inverted)."""
        if not self.uniform:
            return dict(zip(self.dense_keys(), tables))
        field_num = len(self.field_dims)
        single = list(tables[:field_num])
        if not single:  # the dense table keeps one row when there are no single-valued fields
            single = [torch.zeros(1, self.embed_dim, dtype=tables[0].dtype)]
        dense = {"embedding.weight": torch.cat(single)}
        if self.bag_fields:
            dense["bag_embedding.weight"] = torch.cat(list(tables[field_num:]))
        return dense

    def sparse_fields(self, categorical: torch.Tensor, bags: Sequence[Bag], distinct: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, F + K, D) the single-valued fields and pooled bags, in one lookup of ``tables``.

        A field ``f`` in ``distinct`` is looked up at the (U_f,) ids ``distinct[f]`` instead of the
        rows' own: its first U_f rows hold their embeddings and the rest zeros (empty bags), which
        the split products gather from (``FlatFields``).
        """
        assert self.tables is not None
        batch_size = categorical.shape[0]
        one = torch.ones(batch_size, dtype=torch.long, device=categorical.device)
        values, lengths = [], []
        for f in range(len(self.field_dims)):
            ids = None if distinct is None else distinct.get(f)
            if ids is None:
                values.append(categorical[:, f])
                lengths.append(one)
            else:
                values.append(ids)
                lengths.append((torch.arange(batch_size, device=ids.device) < len(ids)).long())
        values += [bag.values for bag in bags]
        lengths += [bag.lengths() for bag in bags]  # (B,) values per row
        weights = None
        if any(spec.weighted for spec in self.bag_fields):
            weights = [v.new_ones(v.shape, dtype=torch.float32) for v in values[: len(self.field_dims)]]
            weights += [bag.weights if spec.weighted else bag.values.new_ones(bag.values.shape, dtype=torch.float32) for spec, bag in zip(self.bag_fields, bags)]
        if not self.uniform:
            return self._mean_bags(self.tables(values, lengths, weights, batch_size), bags)  # (B, sum of widths)
        out = self.tables(values, lengths, weights, batch_size).view(batch_size, -1, self.embed_dim)  # (B, F + K, D)
        if not any(spec.pooling == "mean" for spec in self.bag_fields):
            return out
        # The tables sum each bag; a mean divides by the row's count (or weight sum), as pool_bags.
        field_num = len(self.field_dims)
        pooled = [
            _bag_mean(out[:, field_num + k], bag, bag.weights if spec.weighted else None) if spec.pooling == "mean" else out[:, field_num + k]
            for k, (spec, bag) in enumerate(zip(self.bag_fields, bags))
        ]  # K x (B, D)
        return torch.cat([out[:, :field_num], torch.stack(pooled, dim=1)], dim=1)

    def _mean_bags(self, out: torch.Tensor, bags: Sequence[Bag]) -> torch.Tensor:
        """Per-field layout: the tables' (B, sum of widths) sums, each mean bag divided by its count."""
        field_num = len(self.field_dims)
        parts = list(out.split(list(self.widths[: field_num + len(self.bag_fields)]), dim=1))  # (F + K) x (B, D_e)
        for k, (spec, bag) in enumerate(zip(self.bag_fields, bags)):
            if spec.pooling == "mean":
                parts[field_num + k] = _bag_mean(parts[field_num + k], bag, bag.weights if spec.weighted else None)
        return torch.cat(parts, dim=1)

    @classmethod
    def from_schema(cls, schema: FeatureSchema, embed_dim: int, stacked: bool = False) -> FieldEmbedding:
        """The schema's field embeddings; ``stacked``: a model that needs (B, E, D) (see the class)."""
        if not schema.per_field_embeddings:
            return cls(schema.field_dims, schema.numerical_num, embed_dim, schema.bags)
        layer = cls(
            schema.field_dims, schema.numerical_num, embed_dim, schema.bags, schema.embedding_dims(embed_dim), schema.table_owners(), stacked
        )
        layer.spec_names = schema.embedded_names  # the spec's names of the categorical fields, for messages
        return layer

    @property
    def output_dim(self) -> int:
        """Width of the flattened output, ``E * D`` (the widths' sum with per-field embeddings)."""
        return sum(self.widths)

    def field_list(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> list[torch.Tensor]:
        """Per-field layout: E x (B, D_e) the field embeddings at their own widths."""
        sparse_num = len(self.field_dims) + len(self.bag_fields)
        if self.tables is not None:
            parts = list(self.sparse_fields(categorical, bags).split(list(self.widths[:sparse_num]), dim=1))  # (F + K) x (B, D_e)
        else:
            names = self.feature_names()
            tables = [self.field_tables[names[owner]] for owner in self.owners]
            parts = [tables[f](categorical[:, f]) for f in range(len(self.field_dims))]  # F x (B, D_f)
            for k, (spec, bag) in enumerate(zip(self.bag_fields, bags)):
                weights = bag.weights if spec.weighted else None
                summed = F.embedding_bag(bag.values, tables[len(self.field_dims) + k].weight, bag.offsets[:-1], mode="sum", per_sample_weights=weights)
                parts.append(_bag_mean(summed, bag, weights) if spec.pooling == "mean" else summed)  # (B, D_k)
        if self.numerical is not None:
            parts.append(self.numerical(numerical))  # (B, D)
        return parts

    def stack(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-field layout: E x (B, D_e) -> (B, E, D), each field of another width projected to D."""
        if self.projections is None:
            raise ValueError(
                f"this model stacks its fields as (B, E, D), and their widths differ ({', '.join(map(str, self.widths))}): "
                "build its FieldEmbedding with stacked=True"
            )
        return torch.stack([self.projections[str(e)](x) if str(e) in self.projections else x for e, x in enumerate(parts)], dim=1)

    def concat(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, sum of widths) the field embeddings side by side (``E * D`` in the uniform layout)."""
        if self.uniform:
            return self(categorical, numerical, bags).flatten(1)
        return torch.cat(self.field_list(categorical, numerical, bags), dim=1)

    def pool_bags(self, bags: Sequence[Bag]) -> torch.Tensor:
        """One pooled embedding per multi-valued field: K bags of B rows -> (B, K, D)."""
        pooled = []
        for k, (spec, bag) in enumerate(zip(self.bag_fields, bags)):
            values = bag.values + self.bag_offsets[k]
            starts = bag.offsets[:-1]
            weights = bag.weights if spec.weighted else None
            summed = F.embedding_bag(values, self.bag_embedding.weight, starts, mode="sum", per_sample_weights=weights)  # (B, D)
            pooled.append(_bag_mean(summed, bag, weights) if spec.pooling == "mean" else summed)
        return torch.stack(pooled, dim=1)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats and K bags -> (B, E, D) field embeddings."""
        if not self.uniform:
            return self.stack(self.field_list(categorical, numerical, bags))  # (B, E, D)
        parts = []
        if self.tables is not None:
            parts.append(self.sparse_fields(categorical, bags))  # (B, F + K, D)
        elif self.field_dims:
            parts.append(self.embedding(categorical + self.offsets))  # (B, F, D)
        if self.bag_fields and self.tables is None:
            parts.append(self.pool_bags(bags))  # (B, K, D)
        if self.numerical is not None:
            parts.append(self.numerical(numerical).unsqueeze(1))  # (B, 1, D)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def flat(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> FlatFields:
        """The (B, E * D) concatenated embeddings, deferred (see ``FlatFields``)."""
        if len(bags) != len(self.bag_fields):
            raise ValueError(f"expected {len(self.bag_fields)} multi-valued fields, got {len(bags)}")
        return FlatFields(self, categorical, numerical, tuple(bags))


def _bag_mean(summed: torch.Tensor, bag: Bag, weights: torch.Tensor | None) -> torch.Tensor:
    """(B, D) bag sums divided by each row's number of values, or its weight sum when weighted;
    an empty row stays 0."""
    if weights is None:
        total = bag.lengths().to(summed.dtype)  # (B,) values per row
    else:
        starts = bag.offsets[:-1]
        # Each row's weight sum, as the same bag sum over a one-entry table of ones: no shape that
        # depends on the offsets' values, so the model exports with a symbolic batch size (ONNX,
        # torch.export).
        ones = summed.new_ones(1, 1)
        total = F.embedding_bag(torch.zeros_like(bag.values), ones, starts, mode="sum", per_sample_weights=weights.to(summed.dtype))[:, 0]  # (B,)
    return summed / total.clamp_min(torch.finfo(summed.dtype).tiny).unsqueeze(1)


class SparseTables(nn.Module):
    """What ``FieldEmbedding.attach_tables`` takes: one table per field, looked up as bags.

    ``forward(values, lengths, weights, batch_size)``: per field (F single-valued, then K bags), its
    (N_f,) ids and (B,) values per row, optional (N_f,) float32 weights per field (all or none) ->
    (B, (F + K) * D), each field's row the sum of its values' (weighted) embeddings.
    ``load_field_weights`` copies per-field weights in; ``field_weights`` gives them (gathered whole).
    """

    @property
    def element_count(self) -> int:
        """Weights in all the tables, whole (over every process when sharded)."""
        raise NotImplementedError

    def load_field_weights(self, tables: Sequence[torch.Tensor]) -> None:
        raise NotImplementedError

    def field_weights(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def table_keys(self, prefix: str) -> list[str]:
        """The state dict's keys of the per-field tables, in field order."""
        raise NotImplementedError

    def autograd_leaves(self) -> list[torch.Tensor]:
        """Leaves upstream of the lookup: a backward pass with ``inputs=`` these runs the tables'
        update and nothing else (the gradient methods' last pass, ``mto.gradients``)."""
        raise NotImplementedError

    def optimizer_state(self) -> dict:
        """The fused optimizer's state (checkpoints, resume)."""
        raise NotImplementedError

    def load_optimizer_state(self, state: dict) -> None:
        raise NotImplementedError


def sparse_tables(module: nn.Module) -> list[SparseTables]:
    """The sparse-lookup modules inside ``module`` (none on the dense backend)."""
    return [m for m in module.modules() if isinstance(m, SparseTables)]


def _convert_table_layout(module: FieldEmbedding, state_dict: dict, prefix: str, *args) -> None:
    """Let a ``FieldEmbedding`` load a state dict written in the other backend's layout.

    Dense -> per-field tables: a checkpoint of the dense backend (or a dense model's weights copied
    into a torchrec one); per-field tables -> dense: a torchrec run's checkpoint loaded in one
    process by ``evaluate``, ``predict``, ``export`` and the Python API.
    """
    dense_keys = [prefix + key for key in module.dense_keys()]
    if module.tables is None:
        table_keys = [key for key in state_dict if key.startswith(prefix + "tables.") and key.endswith(".weight") and "embedding_bags" in key]
        if dense_keys[0] in state_dict or not table_keys:
            return
        tables = [state_dict.pop(_key_of(table_keys, prefix, name)) for name in module.table_names()]
        for key in [k for k in state_dict if k.startswith(prefix + "tables.")]:
            state_dict.pop(key)
        for key, value in module.join_fields(tables).items():
            state_dict[prefix + key] = value
        return
    if dense_keys[0] not in state_dict:
        return
    dense = {key[len(prefix) :]: state_dict.pop(key) for key in dense_keys}
    for key, table in zip(module.tables.table_keys(prefix + "tables."), module.split_dense(dense)):
        state_dict[key] = table


def _key_of(keys: list[str], prefix: str, name: str) -> str:
    for key in keys:
        if key.endswith(f".{name}.weight"):
            return key
    raise KeyError(f"{prefix}tables: no table {name} in the state dict")


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
        first = modules[0]
        x = input_linear(x, first.weight.t(), first.bias)  # (B, dims[0])
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
        activation: ``"relu"`` (``MLP``'s), or ``"swish"`` (``x * sigmoid(x)``, HoME's normalised
            experts: after BatchNorm half the values are negative, which ReLU would zero).
    """

    ACTIVATIONS = ("relu", "swish")

    def __init__(
        self, input_dim: int, dims: Sequence[int], n: int, dropout: float, output_layer: bool = False, activation: str = "relu"
    ):
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(self.ACTIVATIONS)}, got {activation!r}")
        widths = [input_dim, *dims] + ([1] if output_layer else [])
        self.activation = activation
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
        batch_size = batch_size_of(x)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if layer == 0 and (isinstance(x, DeferredFields) or x.dim() == 2):
                # One product over all members' columns: (B, I) @ (I, n * O).
                x = input_linear(x, self.first_weight(), bias.flatten())  # (B, n * O)
            elif x.dim() == 2:
                x = torch.addmm(bias.flatten(), x, weight.permute(1, 0, 2).flatten(1))  # (B, n * O)
            else:
                x = torch.baddbmm(bias.unsqueeze(1), x.transpose(0, 1), weight).transpose(0, 1)  # (B, n, O)
            if layer < self.hidden_num:
                x = self.norms[layer](x.reshape(batch_size, -1))  # (B, n * O)
                if self.activation == "relu":
                    x = relu_dropout(x, self.dropout.p, self.training)
                else:
                    x = self.dropout(F.silu(x))
            if x.dim() == 2:
                x = x.unflatten(1, (self.n, -1))  # (B, n, O)
        return x


class Gate(nn.Module):
    """``gate_num`` softmax gates over ``expert_num`` experts, computed as one product.

    Input (B, input_dim) or ``FlatFields``, read by every gate, or (B, gate_num, input_dim), one
    row per gate (each task's gate reading that task's representation: AdaTT, HoME); output
    (B, gate_num, expert_num), each row summing to one. ``logits`` gives the scores before the
    softmax, for gates with another normalisation.
    """

    def __init__(self, input_dim: int, expert_num: int, gate_num: int = 1):
        super().__init__()
        self.linear = nn.Linear(input_dim, gate_num * expert_num)
        self.gate_num = gate_num
        self.expert_num = expert_num

    def logits(self, x: torch.Tensor | FlatFields) -> torch.Tensor:
        """(B, gate_num, expert_num) scores of shared or per-gate inputs."""
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            # Gate g's rows of the weight against gate g's input: (G, B, I) @ (G, I, E).
            weight = self.linear.weight.view(self.gate_num, self.expert_num, -1).transpose(1, 2)  # (G, I, E)
            bias = self.linear.bias.view(self.gate_num, 1, self.expert_num)
            return torch.baddbmm(bias, x.transpose(0, 1), weight).transpose(0, 1)  # (B, G, E)
        logits = input_linear(x, self.linear.weight.t(), self.linear.bias)
        return logits.view(-1, self.gate_num, self.expert_num)  # (B, G, E)

    def forward(self, x: torch.Tensor | FlatFields) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


def set_split_products(module: nn.Module, enabled: bool) -> None:
    """Turn the field-by-field products of every ``FieldEmbedding`` inside ``module`` on or off."""
    for layer in module.modules():
        if isinstance(layer, FieldEmbedding):
            layer.split_products = enabled


def mix(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sums of expert outputs: (B, G, E) and (B, E, H) -> (B, G, H)."""
    return torch.bmm(gates, experts)
