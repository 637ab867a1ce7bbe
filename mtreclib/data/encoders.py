"""A spec's encoders together: fitting them on the training split and encoding chunks of rows.

``Encoders.for_spec`` makes one encoder per column; ``fit_pass`` feeds them the training rows when
any needs fitting (a vocabulary to build, a transform's statistics); ``encode`` turns a chunk of
raw rows into the arrays of the cache (and of prediction), checking every value and the tasks'
implied relations on the way.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtreclib.core.schema import Bag, BagField, FeatureSchema
from mtreclib.data.encoding import (
    CategoricalEncoder,
    LabelEncoder,
    Moments,
    NumericalEncoder,
    Place,
    ValueCounter,
    _all_digits,
    _first,
    normalise_ids,
)
from mtreclib.data.spec import CategoricalSpec, DatasetSpec
from mtreclib.data.table import MultiTaskTable


def list_column(array: pa.Array, spec: CategoricalSpec, place: Place, column: str) -> pa.Array:
    """A multi-valued column as a list array: list columns as they are, text (CSV, or Parquet
    strings) split by the separator, an empty text being no values (as CSV reads an empty cell)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = pc.if_else(pc.equal(array, ""), pa.scalar(None, array.type), array)  # "" would split into one empty value
        array = pc.split_pattern(array, pattern=spec.separator)
    if pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        array = array.cast(pa.list_(array.type.value_type))
    if not pa.types.is_list(array.type):
        raise place.error(0, column, f"expected a list column or text joined by {spec.separator!r}, found {array.type}")
    if spec.max_len is not None:
        array = pc.list_slice(array, 0, spec.max_len)
    return array


def _lengths(lists: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def group_ids(array: pa.Array) -> np.ndarray:
    """(n,) int64 group ids: integers as they are; other values by a stable 64-bit hash of their text."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_integer(array.type):
        return array.fill_null(-1).cast(pa.int64()).to_numpy()
    array = array.cast(pa.string())
    if _all_digits(array):
        return pc.cast(array.fill_null("-1"), pa.int64()).to_numpy()
    distinct = pc.unique(array.fill_null(""))
    codes = np.array([int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little", signed=True) for v in distinct.to_pylist()], dtype=np.int64)
    return codes[pc.index_in(array.fill_null(""), value_set=distinct).to_numpy(zero_copy_only=False)]


class Encoders:
    """Every column's encoder of one spec."""

    def __init__(self, spec: DatasetSpec, categorical: list[CategoricalEncoder], bags: list[CategoricalEncoder], numerical: list[NumericalEncoder]):
        self.spec = spec
        self.categorical = categorical
        self.bags = bags
        self.numerical = numerical
        self.labels = [LabelEncoder(label) for label in spec.labels]
        by_name = {e.spec.name: e for e in (*categorical, *bags)}
        for encoder in (*categorical, *bags):
            if encoder.spec.shared_with is not None:
                encoder.share(by_name[encoder.spec.shared_with])

    @classmethod
    def for_spec(cls, spec: DatasetSpec) -> Encoders:
        """Unfitted encoders (identity and hash ones need no fitting)."""
        return cls(
            spec,
            [CategoricalEncoder(c) for c in spec.categorical],
            [CategoricalEncoder(c) for c in spec.multi_valued],
            [NumericalEncoder(n) for n in spec.numerical],
        )

    @property
    def needs_fit_pass(self) -> bool:
        """Whether the training rows must be read once before encoding (vocabularies, statistics)."""
        return any(e.kind == "build" for e in (*self.categorical, *self.bags)) or any(
            n.spec.transform in ("standardize", "minmax") for n in self.numerical
        )

    def fitter(self) -> Fitter:
        return Fitter(self)

    def schema(self) -> FeatureSchema:
        """The features and every label, as models see them."""
        spec = self.spec
        implies = tuple(spec.implies.get(label, "") for label in spec.label_names)
        roles = tuple(c.role for c in spec.categorical)
        dims = tuple(c.embedding_dim for c in spec.categorical)
        shared = tuple(c.shared_with for c in spec.categorical)
        return FeatureSchema(
            task_types=tuple(label.type for label in spec.labels),
            field_dims=tuple(e.vocab_size for e in self.categorical),
            numerical_num=len(self.numerical),
            task_names=spec.label_names,
            field_names=tuple(c.name for c in spec.categorical),
            field_roles=roles if any(roles) else (),
            bags=tuple(
                BagField(
                    e.spec.name,
                    e.vocab_size,
                    e.spec.pooling,
                    weighted=e.spec.weights is not None,
                    role=e.spec.role,
                    embedding_dim=e.spec.embedding_dim,
                    shared_with=e.spec.shared_with,
                )
                for e in self.bags
            ),
            task_implies=implies if any(implies) else (),
            field_embedding_dims=dims if any(d is not None for d in dims) else (),
            field_shared_with=shared if any(s is not None for s in shared) else (),
        )

    def encode(
        self, table: pa.Table, place: Place, *, training: bool = False, labels: bool = True, inline: bool = False
    ) -> MultiTaskTable:
        """A chunk of raw rows (the spec's columns) as encoded rows; every value checked.

        ``labels=False``: rows to score, of the feature columns alone (no labels, group or weights).
        A multi-valued field kept in a side table is left out (None; the cache joins it by the
        rows' keys) unless ``inline``: prediction input carries such fields on the rows themselves.
        """
        n = table.num_rows
        spec = self.spec
        columns = [e.encode(table.column(e.spec.column).combine_chunks(), place, training=training) for e in self.categorical]
        categorical = np.stack(columns, axis=1) if columns else np.zeros((n, 0), np.int32)
        numerical = np.empty((n, len(self.numerical)), dtype=np.float32)
        for j, encoder in enumerate(self.numerical):
            numerical[:, j] = encoder.encode(table.column(encoder.spec.column).combine_chunks(), place)
        bags = tuple(self._bag(e, table, place, training) if e.spec.table is None or inline else None for e in self.bags)
        if not labels:
            # Rows to score have no labels, and no use for what only training and evaluation read.
            return MultiTaskTable(categorical, numerical, None, bags=bags)
        encoded_labels = np.empty((n, len(self.labels)), dtype=spec.label_dtype)
        for t, encoder in enumerate(self.labels):
            encoded_labels[:, t] = encoder.encode(table.column(encoder.spec.column).combine_chunks(), place)
        self._check_implies(encoded_labels, place)
        return MultiTaskTable(
            categorical,
            numerical,
            encoded_labels,
            probabilities=self._probabilities(table, place),
            bags=bags,
            weights=self._weights(table, place) if spec.sample_weight else None,
            group=group_ids(table.column(spec.group)) if spec.group else None,
        )

    def missing(self, table: pa.Table) -> tuple[list[int], list[int]]:
        """Missing values in a chunk of raw rows: per categorical field, per numerical feature."""
        return [table.column(e.spec.column).null_count for e in self.categorical], [table.column(e.spec.column).null_count for e in self.numerical]

    def side_bags(self, table: str) -> list[int]:
        """Positions among the multi-valued fields of those kept in side table ``table``."""
        return [k for k, e in enumerate(self.bags) if e.spec.table == table]

    def encode_side(self, name: str, table: pa.Table, place: Place, *, training: bool = False) -> dict[int, Bag]:
        """A chunk of side table ``name``'s rows: its multi-valued fields, by position among all."""
        return {k: self._bag(self.bags[k], table, place, training) for k in self.side_bags(name)}

    def _bag(self, encoder: CategoricalEncoder, table: pa.Table, place: Place, training: bool) -> Bag:
        spec = encoder.spec
        lists = list_column(table.column(spec.column), spec, place, spec.column)
        lengths = _lengths(lists)
        values = encoder.encode(pc.list_flatten(lists), place, training=training)
        weights = None
        if spec.weights:
            weight_lists = list_column(table.column(spec.weights), spec, place, spec.weights)
            weight_lengths = _lengths(weight_lists)
            bad = weight_lengths != lengths
            if bad.any():
                i = _first(bad)
                raise place.error(i, spec.weights, f"{weight_lengths[i]} weights for {lengths[i]} values of {spec.column}")
            flat = pc.list_flatten(weight_lists)
            try:
                weights = pc.cast(flat, pa.float32()).to_numpy(zero_copy_only=False)
            except pa.ArrowInvalid as error:
                raise place.error(0, spec.weights, f"expected numbers as weights ({error})") from None
            if np.isnan(weights).any() or not np.isfinite(weights).all():
                row = int(np.searchsorted(np.cumsum(lengths), _first(~np.isfinite(weights)), side="right"))
                raise place.error(row, spec.weights, "expected finite weights")
        return Bag.from_lengths(values, lengths, weights)

    def _probabilities(self, table: pa.Table, place: Place) -> np.ndarray | None:
        """(n, T) float64 each label's true probability, when the spec names their columns (generated data)."""
        if not self.labels or self.labels[0].spec.probability is None:  # every label names one or none does
            return None
        out = np.empty((table.num_rows, len(self.labels)), dtype=np.float64)
        for t, encoder in enumerate(self.labels):
            column = encoder.spec.probability
            try:
                values = pc.cast(table.column(column).combine_chunks(), pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise place.error(0, column, "expected probabilities (numbers in [0, 1])") from None
            bad = ~((values >= 0) & (values <= 1))  # NaN (missing) too
            if bad.any():
                i = _first(bad)
                raise place.error(i, column, f"expected a probability in [0, 1], found {values[i]}")
            out[:, t] = values
        return out

    def _weights(self, table: pa.Table, place: Place) -> np.ndarray:
        column = self.spec.sample_weight
        array = table.column(column).combine_chunks()
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.isnan(values) | ~np.isfinite(values) | (values < 0)
        if bad.any():
            i = _first(bad)
            raise place.error(i, column, f"expected a non-negative sample weight, found {values[i]}")
        return values.astype(np.float32)

    def _check_implies(self, labels: np.ndarray, place: Place) -> None:
        names = self.spec.label_names
        for child, parent in self.spec.implies.items():  # binary labels only (the spec checks)
            c, p = names.index(child), names.index(parent)
            bad = (labels[:, c] == 1) & (labels[:, p] == 0)
            if bad.any():
                column = self.spec.labels[c].column
                raise place.error(_first(bad), column, f"{child} = 1 on a row without {parent} (the spec says {child} implies {parent})")

    def to_dict(self) -> dict[str, Any]:
        """Everything prediction needs to encode new rows: the spec and the fitted encoders."""
        return {
            "spec": self.spec.raw,
            "name": self.spec.name,
            "categorical": [e.to_dict() for e in self.categorical],
            "bags": [e.to_dict() for e in self.bags],
            "numerical": [e.to_dict() for e in self.numerical],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Encoders:
        """Inverse of ``to_dict`` (no files are looked for: prediction reads other files)."""
        spec = DatasetSpec.from_dict(data["spec"], name=data.get("name"), files=False)
        return cls(
            spec,
            [CategoricalEncoder.from_dict(e) for e in data["categorical"]],
            [CategoricalEncoder.from_dict(e) for e in data["bags"]],
            [NumericalEncoder.from_dict(e) for e in data["numerical"]],
        )


class Fitter:
    """Statistics of the training rows, then the fitted encoders."""

    def __init__(self, encoders: Encoders):
        self.encoders = encoders
        # A field that shares another's table counts into the owner's counter: one vocabulary of both columns.
        self.counters = {id(e): ValueCounter() for e in (*encoders.categorical, *encoders.bags) if e.kind == "build" and e.owner is None}
        self.moments = {id(n): Moments() for n in encoders.numerical if n.spec.transform in ("standardize", "minmax")}

    def add(self, table: pa.Table, place: Place) -> None:
        for encoder in self.encoders.categorical:
            values = None
            if encoder.kind in ("build", "identity"):
                values = table.column(encoder.spec.column).combine_chunks()
            self._observe(encoder, values, place)
        for encoder in self.encoders.bags:
            if encoder.spec.table is None:
                lists = list_column(table.column(encoder.spec.column), encoder.spec, place, encoder.spec.column)
                self._observe(encoder, pc.list_flatten(lists), place)
        for encoder in self.encoders.numerical:
            if id(encoder) in self.moments:
                self.moments[id(encoder)].add(encoder.raw(table.column(encoder.spec.column).combine_chunks(), place))

    def add_side(self, name: str, table: pa.Table, place: Place) -> None:
        """Rows of side table ``name``: each side row's values counted once."""
        for k in self.encoders.side_bags(name):
            encoder = self.encoders.bags[k]
            lists = list_column(table.column(encoder.spec.column), encoder.spec, place, encoder.spec.column)
            self._observe(encoder, pc.list_flatten(lists), place)

    def _observe(self, encoder: CategoricalEncoder, values: pa.Array | None, place: Place) -> None:
        if encoder.kind == "build":
            self.counters[id(encoder.owner or encoder)].add(normalise_ids(values, place, encoder.spec.column))
        elif encoder.kind == "identity":
            encoder.encode(values, place, training=True)  # checks the ids and tracks the maximum

    def fitted(self) -> Encoders:
        e = self.encoders

        def fit(encoder: CategoricalEncoder) -> CategoricalEncoder:
            if encoder.kind != "build" or encoder.owner is not None:
                return encoder  # a sharing field's vocabulary is its owner's (linked again by ``Encoders``)
            return CategoricalEncoder.fit(encoder.spec, self.counters[id(encoder)])

        numerical = [NumericalEncoder.fit(n.spec, self.moments[id(n)]) if id(n) in self.moments else n for n in e.numerical]
        return Encoders(e.spec, [fit(c) for c in e.categorical], [fit(b) for b in e.bags], numerical)
