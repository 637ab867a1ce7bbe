"""Datasets by name: the built-in synthetic ones, a dataset spec, or a folder in the AliExpress processed layout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtreclib.core.errors import UserError
from mtreclib.core.schema import FeatureSchema
import mtreclib.data.synthetic as synthetic  # the module, not the package (whose __init__ imports this one)
from mtreclib.data.builtin import aliexpress_spec, is_aliexpress_folder
from mtreclib.data.cache import open_cache
from mtreclib.data.encoders import Encoders
from mtreclib.data.spec import DatasetSpec
from mtreclib.data.table import MultiTaskTable


@dataclass(frozen=True)
class Dataset:
    """Named splits and the schema models are built from.

    Attributes:
        schema: the features and the trained tasks.
        train, test: the splits.
        valid: a validation split of the dataset's own, or None (one is carved from ``train``).
        encoding: how raw rows become the encoded arrays (vocabularies, transforms), JSON-ready;
            checkpoints carry it so that prediction encodes new rows the same way.
        default_tasks: the tasks trained when none are named.
        stats: per split, what the cache counted while encoding it (rows, positives per label,
            out-of-vocabulary and missing values per field, multi-valued lengths); None for
            in-memory data.
    """

    name: str
    schema: FeatureSchema
    train: MultiTaskTable
    test: MultiTaskTable
    valid: MultiTaskTable | None = None
    encoding: dict[str, Any] = field(default_factory=dict)
    default_tasks: tuple[str, ...] = ()
    stats: dict[str, Any] | None = None

    def select_tasks(self, names: Sequence[str] = (), task_num: int | None = None) -> Dataset:
        """The dataset with the tasks ``names`` (default: its default tasks), then only the first ``task_num``."""
        names = tuple(names) or self.default_tasks or self.schema.task_names
        unknown = [name for name in names if name not in self.schema.task_names]
        if unknown:
            raise UserError(f"--tasks: dataset {self.name} has no task {unknown[0]!r}; its tasks: {', '.join(self.schema.task_names)}")
        if task_num is not None:
            if task_num > len(names):
                raise UserError(f"--task-num {task_num}: dataset {self.name} has {len(names)} tasks ({', '.join(names)})")
            names = names[:task_num]
        columns = tuple(self.schema.task_names.index(name) for name in names)
        implies = []
        for position, column in enumerate(columns):
            parent = self.schema.task_implies[column] if self.schema.task_implies else ""
            implies.append(parent if parent in names[:position] else "")  # a relation to a task left out is dropped
        schema = replace(self.schema, task_names=names, task_implies=tuple(implies) if any(implies) else ())

        def pick(table: MultiTaskTable | None) -> MultiTaskTable | None:
            return None if table is None else table.with_tasks(columns)

        return replace(self, schema=schema, train=pick(self.train), test=pick(self.test), valid=pick(self.valid))


def builtin_datasets() -> list[str]:
    """Names that need no download."""
    return list(synthetic.PRESETS)


def vocabulary(train: MultiTaskTable) -> tuple[int, ...]:
    """Per-field vocabulary sizes: the training file's largest id + 1, plus one out-of-vocabulary slot.

    The original sized embeddings from the training file alone, so a larger id in the test file
    indexed out of range. Here every id the training data never reached (``>= max + 1``) maps to
    the field's last row, ``max + 1``, which no training row selects: an unknown id gets its
    field's one untrained embedding instead of a crash or another id's embedding.
    """
    return vocabulary_from_max(train.categorical.max(axis=0))


def vocabulary_from_max(categorical_max: Sequence[int]) -> tuple[int, ...]:
    """The vocabulary rule from each field's largest training id (recorded in the cache)."""
    return tuple(int(m) + 2 for m in categorical_max)


def clamp_to_vocabulary(table: MultiTaskTable, field_dims: tuple[int, ...]) -> MultiTaskTable:
    """``table`` with every id beyond its field's vocabulary mapped to the out-of-vocabulary slot."""
    limit = np.asarray(field_dims, dtype=table.categorical.dtype) - 1
    if (table.categorical <= limit).all():
        return table
    return replace(table, categorical=np.minimum(table.categorical, limit))


def identity_encoders(field_dims: Sequence[int]) -> Encoders:
    """The AliExpress layout's encoders for vocabularies ``field_dims`` (training maximum + 2 each)."""
    encoders = Encoders.for_spec(aliexpress_spec())
    for encoder, dim in zip(encoders.categorical, field_dims):
        encoder.max_id = int(dim) - 2
    return encoders


def from_tables(name: str, train: MultiTaskTable, test: MultiTaskTable) -> Dataset:
    """A dataset of in-memory tables in the AliExpress layout: vocabularies from ``train``, ``test`` capped to them."""
    field_dims = vocabulary(train)
    encoders = identity_encoders(field_dims)
    schema = encoders.schema()
    if train.numerical.shape[1] != schema.numerical_num:  # tables of another width (tests): no names to carry
        schema = replace(schema, numerical_num=train.numerical.shape[1])
    return Dataset(name, schema, train, clamp_to_vocabulary(test, field_dims), encoding=encoders.to_dict())


def find_dataset(name: str, data_dir: str | Path = "data") -> DatasetSpec | None:
    """Dataset ``name``'s spec: None for a built-in one; a spec file, a folder's dataset.yaml, or the
    AliExpress processed layout (train.csv, test.csv) of a folder. A user error when nowhere."""
    if name in synthetic.PRESETS:
        return None
    path = Path(name)
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"--dataset {name}: no such dataset spec file")
        return DatasetSpec.load(path)
    folder = Path(data_dir) / name
    if (folder / "dataset.yaml").is_file():
        return DatasetSpec.load(folder / "dataset.yaml")
    if is_aliexpress_folder(folder):
        return aliexpress_spec(folder, name)
    found = f"{folder} has neither" if folder.is_dir() else f"{folder} does not exist, so there is neither"
    raise UserError(
        f"dataset {name!r} not found: {found} a dataset.yaml nor train.csv and test.csv in the AliExpress processed layout "
        f"(see the README, 'Data'); built-in datasets: {', '.join(builtin_datasets())}"
    )


def load_dataset(name: str, data_dir: str | Path = "data", *, progress: bool = True) -> Dataset:
    """Dataset ``name`` (see ``find_dataset``): built in, or through its spec's memory-mapped cache."""
    spec = find_dataset(name, data_dir)
    if spec is None:
        data = synthetic.generate(synthetic.PRESETS[name])
        train = replace(data.train, group=data.train_search_id)
        test = replace(data.test, group=data.test_search_id)
        return from_tables(name, train, test)
    return spec_dataset(spec, progress=progress)


def spec_dataset(spec: DatasetSpec, *, progress: bool = True) -> Dataset:
    """A spec's dataset: its splits memory-mapped from the cache beside the spec (built on first use).

    Nothing is copied into memory: the arrays are the cache's maps, the vocabularies and
    transforms were fitted on the training split when the cache was built.
    """
    base = spec.path.parent if spec.path is not None else spec.files()[0].parent
    cached = open_cache(spec, base, progress=progress)
    tables = cached.tables
    return Dataset(
        spec.name,
        cached.encoders.schema(),
        tables["train"],
        tables["test"],
        valid=tables.get("valid"),
        encoding=cached.encoders.to_dict(),
        default_tasks=spec.tasks,
        stats=cached.meta["splits"],
    )
