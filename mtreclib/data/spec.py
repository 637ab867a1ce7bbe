"""The dataset spec: what a dataset is, as a YAML file and the same as a typed object.

``DatasetSpec.load(path)`` reads ``dataset.yaml`` (docs/dataset-spec.md has every key); every
entry is a typed ``Settings`` object, checked when built, and a mistake stops before any data
is read with one line naming the spec file and the key: ``data/myshop/dataset.yaml:
numerical[1]: transform must be one of standardize, log1p, minmax, got 'log'``. File patterns
are resolved against the spec's folder and must match at least one file.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtreclib.core.errors import UserError, did_you_mean
from mtreclib.core.schema import POOLINGS, ROLES, TASK_TYPES
from mtreclib.core.settings import ConfigError, Settings, setting
from mtreclib.core.yamlfile import read_yaml

FORMATS = ("parquet", "csv")
VOCABULARIES = ("build", "identity")
TRANSFORMS = ("standardize", "log1p", "minmax")
SPLIT_METHODS = ("random", "ordered")
LABEL_TRANSFORMS = ("none", "log1p")


class SpecError(UserError):
    """A dataset spec that cannot be used: one line naming the file and the key."""


@dataclass(frozen=True)
class CsvOptions(Settings):
    flags = False
    delimiter: str = setting(",", "the separator between values")
    header: bool = setting(True, "the first line names the columns")
    columns: tuple[str, ...] = setting((), "the column names when there is no header")

    def check(self) -> None:
        if len(self.delimiter) != 1:
            raise ConfigError(f"delimiter must be one character, got {self.delimiter!r}")
        if not self.header and not self.columns:
            raise ConfigError("columns must name the columns when header is false")


@dataclass(frozen=True)
class CategoricalSpec(Settings):
    """A single-valued categorical column (``multi = False``) or a multi-valued one."""

    flags = False
    name: str = setting("", "the feature's name")
    column: str = setting("", "the file's column (default: name)")
    vocabulary: str = setting("build", "build a vocabulary from training values, or use integer ids as they are", choices=VOCABULARIES)
    min_count: int = setting(1, "rarer training values go to the out-of-vocabulary slot", minimum=1)
    hash_buckets: int | None = setting(None, "hash values into this many ids instead of a vocabulary", minimum=1)
    role: str | None = setting(None, "user, item, author or context", choices=ROLES)
    multi: bool = setting(False, "a multi-valued column")
    separator: str = setting("|", "text columns (CSV, Parquet strings): the separator between a row's values; empty text: no values")
    weights: str | None = setting(None, "a column of per-value weights")
    max_len: int | None = setting(None, "keep a row's first values only", minimum=1)
    pooling: str = setting("mean", "how a row's value embeddings are pooled", choices=POOLINGS)
    table: str | None = setting(None, "the side table that holds this multi-valued column (joined to each row by its key)")
    embedding_dim: int | None = setting(None, "this field's embedding width (default: the model's --embed-dim)", minimum=1)
    shared_with: str | None = setting(None, "another categorical field whose embedding table (and vocabulary) this field uses")

    def check(self) -> None:
        if not self.name:
            raise ConfigError("name is missing")
        if not self.column:
            object.__setattr__(self, "column", self.name)
        if self.table is not None and not self.multi:
            raise ConfigError("table is an option of multi_valued columns")
        if self.hash_buckets is not None and self.vocabulary == "identity":
            raise ConfigError("hash_buckets and vocabulary: identity exclude each other")
        if not self.multi and (self.weights is not None or self.max_len is not None):
            raise ConfigError("weights and max_len are options of multi_valued columns")

    @property
    def kind(self) -> str:
        return "hash" if self.hash_buckets is not None else self.vocabulary


@dataclass(frozen=True)
class NumericalSpec(Settings):
    flags = False
    name: str = setting("", "the feature's name")
    column: str = setting("", "the file's column (default: name)")
    fill: float | None = setting(None, "the value of a missing entry (default: a missing value is an error)")
    transform: str | None = setting(None, "fitted on the training split", choices=TRANSFORMS)

    def check(self) -> None:
        if not self.name:
            raise ConfigError("name is missing")
        if not self.column:
            object.__setattr__(self, "column", self.name)


@dataclass(frozen=True)
class LabelSpec(Settings):
    """A task's label: 0/1 (``binary``, by a threshold or positive values if asked) or a
    continuous target (``regression``, optionally ``log1p``-transformed; its metrics and the
    model's predictions are on the transformed scale)."""

    flags = False
    name: str = setting("", "the task's name")
    column: str = setting("", "the file's column (default: name)")
    type: str = setting("binary", "binary: a 0/1 label; regression: a continuous target", choices=TASK_TYPES)
    transform: str = setting("none", "regression: the target as it is, or log1p(value) (values must be >= 0)", choices=LABEL_TRANSFORMS)
    scale: float = setting(1.0, "regression: multiply the raw value by this before the transform (0.001: milliseconds to seconds)", above=0)
    fill: float | None = setting(None, "regression: the raw value of a missing entry (default: a missing value is an error)")
    threshold: float | None = setting(None, "positive when the value is greater than this")
    positive: tuple[str, ...] = setting((), "positive when the value is one of these")
    probability: str | None = setting(None, "a column of the label's true probability, where the data knows it (generated data): the oracle's metrics")

    def check(self) -> None:
        if not self.name:
            raise ConfigError("name is missing")
        if not self.column:
            object.__setattr__(self, "column", self.name)
        if self.threshold is not None and self.positive:
            raise ConfigError("threshold and positive exclude each other")
        if self.type == "regression":
            for key, value in (("threshold", self.threshold), ("positive", self.positive), ("probability", self.probability)):
                if value:
                    raise ConfigError(f"{key} is an option of binary labels; this label has type: regression")
            return
        for key, value, default in (("transform", self.transform, "none"), ("scale", self.scale, 1.0), ("fill", self.fill, None)):
            if value != default:
                raise ConfigError(f"{key} is an option of regression labels; add type: regression or drop {key}: {value}")

    @property
    def regression(self) -> bool:
        return self.type == "regression"


@dataclass(frozen=True)
class SideTableSpec(Settings):
    """A table of multi-valued columns shared by many rows (a user's history), joined to each row by a key.

    Its values are stored once and each row points to its table row, instead of a copy of the
    lists on every row (Ali-CCP's ~500 user features are shared by ~58 impressions each).
    """

    flags = False
    key: str = setting("", "the key column, in the side table")
    row_key: str = setting("", "the key column in the rows (default: key)")

    def check(self) -> None:
        if not self.key:
            raise ConfigError("key is missing: the column that joins the table to the rows")
        if not self.row_key:
            object.__setattr__(self, "row_key", self.key)


@dataclass(frozen=True)
class SplitRule(Settings):
    flags = False
    method: str = setting("random", "random: a seeded share of rows; ordered: the last rows by a column", choices=SPLIT_METHODS)
    test: float = setting(0.1, "share of rows in the test split", above=0, below=1)
    valid: float = setting(0.0, "share of rows in the validation split", minimum=0, below=1)
    seed: int = setting(0, "seeds the random split", minimum=0)
    column: str | None = setting(None, "ordered: the column that orders rows (a timestamp)")

    def check(self) -> None:
        if self.test + self.valid >= 1:
            raise ConfigError(f"test + valid must leave rows for training, got {self.test} + {self.valid}")
        if self.method == "ordered" and not self.column:
            raise ConfigError("column is needed by method: ordered")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: where its splits are and what its columns mean.

    Attributes:
        path: the spec file (None for a built-in spec).
        name: the dataset's name in results.
        format: ``parquet`` or ``csv``.
        csv: CSV options.
        splits: split name (``train``, ``valid``, ``test``) -> its files; or ``source`` alone,
            cut by ``split``.
        split: the rule that cuts ``source``, or None.
        categorical, multi_valued, numerical, labels: the columns.
        tasks: the labels trained by default.
        implies: task -> the task its positives imply.
        group, sample_weight: optional columns carried to the batch.
        tables: side tables by name: their settings and, per split, their files (one file list
            for every split under ``source``/``split``, stored under ``"source"``).
    """

    path: Path | None
    name: str
    format: str
    csv: CsvOptions
    splits: dict[str, tuple[Path, ...]]
    split: SplitRule | None
    categorical: tuple[CategoricalSpec, ...]
    multi_valued: tuple[CategoricalSpec, ...]
    numerical: tuple[NumericalSpec, ...]
    labels: tuple[LabelSpec, ...]
    tasks: tuple[str, ...] = ()
    implies: dict[str, str] = field(default_factory=dict)
    group: str | None = None
    sample_weight: str | None = None
    tables: dict[str, tuple[SideTableSpec, dict[str, tuple[Path, ...]]]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else f"built-in spec {self.name}"

    @property
    def split_names(self) -> tuple[str, ...]:
        if self.split is not None:
            return ("train", "valid", "test") if self.split.valid > 0 else ("train", "test")
        return tuple(name for name in ("train", "valid", "test") if name in self.splits)

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def label_dtype(self) -> type:
        """How encoded labels are stored: uint8 when every label is 0/1, float32 when a regression target is among them."""
        return np.float32 if any(label.regression for label in self.labels) else np.uint8

    def files(self) -> tuple[Path, ...]:
        """Every row file, once (side tables' files: ``table_files``)."""
        return tuple(dict.fromkeys(path for paths in self.splits.values() for path in paths))

    def table_files(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(path for _, files in self.tables.values() for paths in files.values() for path in paths))

    def side_fields(self, table: str) -> tuple[CategoricalSpec, ...]:
        return tuple(c for c in self.multi_valued if c.table == table)

    def columns_needed(self, *, labels: bool = True, inline: bool = False) -> tuple[str, ...]:
        """The row files' columns the spec reads, in a fixed order.

        ``labels=False``: the feature columns alone, what prediction reads (no labels, nor the
        group, sample-weight and split-order columns that only training and evaluation use);
        ``inline=True``: side tables' columns expected on the rows themselves (prediction input
        carries them joined) instead of the rows' keys.
        """
        names = [c.column for c in self.categorical]
        for c in self.multi_valued:
            if c.table is None or inline:
                names += [c.column] + ([c.weights] if c.weights else [])
        names += [n.column for n in self.numerical]
        if labels:
            names += [label.column for label in self.labels]
            names += [label.probability for label in self.labels if label.probability]
            names += [c for c in (self.group, self.sample_weight, self.split.column if self.split else None) if c]
        if not inline:
            names += [table.row_key for table, _ in self.tables.values()]
        return tuple(dict.fromkeys(names))

    def table_columns(self, table: str) -> tuple[str, ...]:
        """A side table's columns the spec reads: its key, then its fields."""
        names = [self.tables[table][0].key]
        for c in self.side_fields(table):
            names += [c.column] + ([c.weights] if c.weights else [])
        return tuple(dict.fromkeys(names))

    def fingerprint(self) -> str:
        """A hash of what the spec says (not of where it is), for the cache."""
        content = json.dumps(self.raw, sort_keys=True, default=str)
        files = [str(path) for path in (*self.files(), *self.table_files())]
        return hashlib.sha1((content + "\n" + "\n".join(files)).encode()).hexdigest()[:16]

    @classmethod
    def load(cls, path: str | Path) -> DatasetSpec:
        """Read and check a spec file."""

        path = Path(path)
        try:
            data = read_yaml(path, "a dataset spec")
        except ConfigError as error:
            raise SpecError(str(error)) from None
        return cls.from_dict(data, path=path)

    @classmethod
    def from_dict(
        cls, data: Any, *, path: Path | None = None, name: str | None = None, base: Path | None = None, files: bool = True
    ) -> DatasetSpec:
        """A spec from parsed YAML; ``base`` resolves relative file patterns (default: the spec's folder).

        ``files=False`` reads only what the columns mean (a checkpoint's copy of a spec, whose
        files need not exist where the model is used).
        """
        where = str(path) if path is not None else f"dataset spec {name or ''}".strip()
        if not isinstance(data, dict):
            raise SpecError(f"{where}: expected 'key: value' lines, got {type(data).__name__}")
        return _Reader(data, where, base or (path.parent if path is not None else Path(".")), files).spec(path, name)


KEYS = (
    "name", "format", "csv", "train", "valid", "test", "source", "split", "categorical", "multi_valued",
    "numerical", "labels", "tasks", "implies", "group", "sample_weight", "tables",
)  # fmt: skip


class _Reader:
    """Builds a ``DatasetSpec`` from parsed YAML, naming the key of every mistake."""

    def __init__(self, data: dict, where: str, base: Path, files: bool = True):
        self.data = data
        self.where = where
        self.base = base
        self.files = files

    def fail(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.where}: {key}: {message}")

    def spec(self, path: Path | None, name: str | None) -> DatasetSpec:
        data = self.data
        unknown = [key for key in data if key not in KEYS]
        if unknown:
            raise self.fail(str(unknown[0]), f"not a dataset spec key{did_you_mean(str(unknown[0]), KEYS)}; known: {', '.join(KEYS)}")
        labels = tuple(self.entries("labels", LabelSpec, "name"))
        if not labels:
            raise self.fail("labels", "name at least one label column (a task)")
        categorical = tuple(self.entries("categorical", CategoricalSpec, "name"))
        multi = tuple(self.entries("multi_valued", CategoricalSpec, "name", multi=True))
        if not categorical and not multi:
            raise self.fail("categorical", "name at least one categorical or multi_valued column")
        numerical = tuple(self.entries("numerical", NumericalSpec, "name"))
        names = [e.name for e in (*categorical, *multi, *numerical)]
        repeated = next((n for n in names if names.count(n) > 1), None)
        if repeated:
            raise self.fail("categorical", f"feature {repeated!r} is named twice")
        label_names = [label.name for label in labels]
        if len(set(label_names)) != len(label_names):
            raise self.fail("labels", "a label is named twice")
        known = [label.probability is not None for label in labels]
        if any(known) and any(label.regression for label in labels):
            raise self.fail("labels", "probability: the oracle's columns need every label binary")
        if any(known) and not all(known):
            raise self.fail(f"labels[{known.index(False)}]", "probability: name every label's probability column or none")
        tasks = self.names("tasks")
        for task in tasks:
            if task not in label_names:
                raise self.fail("tasks", f"{task!r} is not a label; labels: {', '.join(label_names)}")
        implies = self.implies(tasks or tuple(label_names), labels)
        fmt, splits, rule = self.splits()
        tables = self.side_tables(splits)
        for i, column in enumerate(multi):
            if column.table is not None and column.table not in tables:
                raise self.fail(f"multi_valued[{i}]", f"table {column.table!r} is not among the spec's tables ({', '.join(tables) or 'none'})")
        self.check_sharing(categorical, multi, numerical)
        csv = self.entry("csv", CsvOptions, data.get("csv") or {})
        return DatasetSpec(
            path=path,
            name=str(data.get("name") or name or (path.parent.name if path is not None else "dataset")),
            format=fmt,
            csv=csv,
            splits=splits,
            split=rule,
            categorical=categorical,
            multi_valued=multi,
            numerical=numerical,
            labels=labels,
            tasks=tasks,
            implies=implies,
            group=self.column("group"),
            sample_weight=self.column("sample_weight"),
            tables=tables,
            raw=dict(data),
        )

    def check_sharing(self, categorical: tuple[CategoricalSpec, ...], multi: tuple[CategoricalSpec, ...], numerical: tuple[NumericalSpec, ...]) -> None:
        """``shared_with`` names a categorical field that owns its table, with the same vocabulary
        rule and width: the two fields are one table and one vocabulary, built from both columns."""
        keys = [f"categorical[{i}]" for i in range(len(categorical))] + [f"multi_valued[{i}]" for i in range(len(multi))]
        fields = (*categorical, *multi)
        by_name = {c.name: c for c in fields}
        for key, c in zip(keys, fields):
            if c.shared_with is None:
                continue
            where = f"{key}.shared_with"
            owner = by_name.get(c.shared_with)
            if owner is None:
                kind = "a numerical feature" if c.shared_with in {n.name for n in numerical} else "not a feature"
                raise self.fail(where, f"{c.shared_with!r} is {kind}; expected a categorical or multi_valued field: {', '.join(by_name)}")
            if owner is c:
                raise self.fail(where, f"{c.name!r} cannot share its own table")
            if owner.shared_with is not None:
                raise self.fail(where, f"{owner.name!r} itself shares {owner.shared_with!r}'s table; name {owner.shared_with!r} (no chains)")
            for name in ("vocabulary", "hash_buckets", "min_count"):
                if getattr(c, name) != getattr(owner, name):
                    raise self.fail(
                        f"{key}.{name}", f"{getattr(c, name)!r} differs from {owner.name!r}'s {getattr(owner, name)!r}: a shared table has one vocabulary rule"
                    )
            if c.embedding_dim is not None and c.embedding_dim != owner.embedding_dim:
                width = "the default --embed-dim" if owner.embedding_dim is None else f"{owner.embedding_dim}"
                raise self.fail(f"{key}.embedding_dim", f"{c.embedding_dim} differs from {owner.name!r}'s width ({width}): a shared table has one width; set it on {owner.name!r}")

    def entry(self, key: str, cls: type[Settings], values: Any, **extra: Any) -> Any:
        if not isinstance(values, dict):
            raise self.fail(key, f"expected a mapping of options, got {values!r}")
        try:
            return cls.build({**{str(k): v for k, v in values.items()}, **extra})
        except ConfigError as error:
            raise self.fail(key, str(error)) from None

    def entries(self, key: str, cls: type[Settings], first: str, **extra: Any) -> list:
        values = self.data.get(key) or []
        if isinstance(values, (str, dict)):
            values = [values]
        if not isinstance(values, list):
            raise self.fail(key, f"expected a list of column names or mappings, got {values!r}")
        found = []
        for i, value in enumerate(values):
            entry = {first: value} if isinstance(value, (str, int)) and not isinstance(value, bool) else value
            found.append(self.entry(f"{key}[{i}]", cls, entry, **extra))
        return found

    def names(self, key: str) -> tuple[str, ...]:
        values = self.data.get(key) or []
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, (str, int)) for v in values):
            raise self.fail(key, f"expected a list of names, got {values!r}")
        return tuple(str(v) for v in values)

    def column(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.fail(key, f"expected a column name, got {value!r}")
        return str(value)

    def implies(self, order: tuple[str, ...], specs: tuple[LabelSpec, ...]) -> dict[str, str]:
        labels = [label.name for label in specs]
        value = self.data.get("implies") or {}
        if not isinstance(value, dict):
            raise self.fail("implies", f"expected 'task: parent' pairs, got {value!r}")
        found = {}
        for child, parent in value.items():
            child, parent = str(child), str(parent)
            for task in (child, parent):
                if task not in labels:
                    raise self.fail(f"implies.{child}", f"{task!r} is not a label; labels: {', '.join(labels)}")
            if child == parent:
                raise self.fail(f"implies.{child}", "a task cannot imply itself")
            regression = next((task for task in (child, parent) if specs[labels.index(task)].regression), None)
            if regression is not None:
                raise self.fail(f"implies.{child}", f"{regression!r} is a regression label; a relation holds only between binary labels")
            # Models read a task's parent before the task (ESMM multiplies the parent's probability in).
            for key, names in (("labels", labels), ("tasks", order)):
                if child in names and parent in names and names.index(parent) > names.index(child):
                    raise self.fail(f"implies.{child}", f"{child} implies {parent}, so list {parent} before {child} in {key}")
            found[child] = parent
        return found

    def splits(self) -> tuple[str, dict[str, tuple[Path, ...]], SplitRule | None]:
        data = self.data
        if not self.files:
            return str(data.get("format") or "parquet"), {}, None
        has_source = "source" in data
        if has_source and any(key in data for key in ("train", "valid", "test")):
            raise self.fail("source", "give either source (with split) or train and test, not both")
        if has_source:
            if "split" not in data:
                raise self.fail("split", "source needs a split rule, e.g. {method: random, test: 0.1, valid: 0.1, seed: 0}")
            splits = {"source": self.patterns("source")}
            rule = self.entry("split", SplitRule, data["split"] or {})
        else:
            for key in ("train", "test"):
                if key not in data:
                    raise self.fail(key, "missing: name the split's file, list of files or glob (or give source and split)")
            if "split" in data:
                raise self.fail("split", "a split rule cuts a source; this spec names its splits' files")
            splits = {key: self.patterns(key) for key in ("train", "valid", "test") if key in data}
            rule = None
        files = [path for paths in splits.values() for path in paths]
        fmt = data.get("format")
        if fmt is None:
            suffixes = {path.suffix.lower() for path in files}
            fmt = "parquet" if suffixes <= {".parquet", ".pq"} else "csv" if suffixes <= {".csv", ".tsv", ".txt", ".gz"} else None
            if fmt is None:
                raise self.fail("format", f"cannot tell from the files' suffixes ({', '.join(sorted(suffixes))}); say parquet or csv")
        if fmt not in FORMATS:
            raise self.fail("format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt, splits, rule

    def side_tables(self, splits: dict[str, tuple[Path, ...]]) -> dict[str, tuple[SideTableSpec, dict[str, tuple[Path, ...]]]]:
        value = self.data.get("tables") or {}
        if not isinstance(value, dict):
            raise self.fail("tables", f"expected 'name: {{key: ..., train: ..., test: ...}}' entries, got {value!r}")
        found = {}
        for name, entry in value.items():
            where = f"tables.{name}"
            if not isinstance(entry, dict):
                raise self.fail(where, f"expected a mapping with key and files, got {entry!r}")
            settings = {k: v for k, v in entry.items() if k in ("key", "row_key")}
            table = self.entry(where, SideTableSpec, settings)
            files: dict[str, tuple[Path, ...]] = {}
            if self.files:
                wanted = ("source",) if "source" in splits else tuple(splits)
                unknown = [k for k in entry if k not in ("key", "row_key", "file", *wanted)]
                if unknown:
                    raise self.fail(f"{where}.{unknown[0]}", f"not a side-table key; expected key, row_key, and file or {', '.join(wanted)}")
                for split in wanted:
                    source = "file" if "file" in entry else split
                    if source not in entry:
                        raise self.fail(where, f"name the table's file for the {split} split ({split}: ...), or one file for all (file: ...)")
                    files[split] = self.patterns(source, entry, where)
            found[str(name)] = (table, files)
        return found

    def patterns(self, key: str, within: dict | None = None, where: str | None = None) -> tuple[Path, ...]:
        data = self.data if within is None else within
        key_name = key if where is None else f"{where}.{key}"
        value = data.get(key)
        patterns = value if isinstance(value, list) else [value]
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise self.fail(key_name, f"expected a file, a list of files or a glob, got {value!r}")
        found: list[Path] = []
        for pattern in patterns:
            full = pattern if Path(pattern).is_absolute() else str(self.base / pattern)
            matches = sorted(glob.glob(full, recursive=True)) if glob.has_magic(pattern) else ([full] if Path(full).exists() else [])
            matches = [m for m in matches if Path(m).is_file()]
            if not matches:
                raise self.fail(key_name, f"{pattern} matches no file (looked in {self.base})")
            found += [Path(m) for m in matches]
        return tuple(dict.fromkeys(found))
