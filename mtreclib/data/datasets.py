"""Datasets by name: the built-in generated ones, a dataset spec, or a folder in the AliExpress processed layout.

Every one is read the same way: its spec's encoders turn its files into the arrays of a
memory-mapped cache, built on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mtreclib.core.errors import UserError, did_you_mean
from mtreclib.core.schema import FeatureSchema
from mtreclib.data import synthetic
from mtreclib.data.builtin import aliexpress_spec, generated_spec, is_aliexpress_folder
from mtreclib.data.cache import open_cache
from mtreclib.data.generated import ensure_generated
from mtreclib.data.sources import file_columns
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
            if parent in names[position:]:
                # Refused rather than reordered: --task-weights and the like follow the order given.
                raise UserError(
                    f"--tasks {','.join(names)}: {names[position]} implies {parent} (the dataset spec's implies), "
                    f"so name {parent} first: --tasks {','.join(self._parents_first(names))}"
                )
            implies.append(parent if parent in names[:position] else "")  # a relation to a task left out is dropped
        types = tuple(self.schema.task_type(column) for column in columns)
        schema = replace(self.schema, task_names=names, task_implies=tuple(implies) if any(implies) else (), task_types=types)

        def pick(table: MultiTaskTable | None) -> MultiTaskTable | None:
            return None if table is None else table.with_tasks(columns)

        return replace(self, schema=schema, train=pick(self.train), test=pick(self.test), valid=pick(self.valid))


    def _parents_first(self, names: tuple[str, ...]) -> list[str]:
        """``names`` in their order, except that each task comes after the task it implies."""
        parents = dict(zip(self.schema.task_names, self.schema.task_implies or ("",) * self.schema.task_num))
        order: list[str] = []

        def place(name: str) -> None:
            if name in order:
                return
            if parents[name] in names:
                place(parents[name])
            order.append(name)

        for name in names:
            place(name)
        return order


def builtin_datasets() -> list[str]:
    """Names that need no download."""
    return list(synthetic.PRESETS)


def find_dataset(name: str, data_dir: str | Path = "data") -> DatasetSpec | None:
    """Dataset ``name``'s spec: None for a built-in (generated) one; a spec file, a folder's
    dataset.yaml, or the AliExpress processed layout (train.csv, test.csv) of a folder. A user
    error when nowhere."""
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
    folders = [entry.name for entry in Path(data_dir).iterdir() if entry.is_dir()] if Path(data_dir).is_dir() else []
    raise UserError(
        f"dataset {name!r} not found{did_you_mean(name, [*builtin_datasets(), *folders])}: {found} a dataset.yaml nor train.csv and test.csv in the AliExpress processed layout "
        f"(see the README, 'Data'); built-in datasets: {', '.join(builtin_datasets())}"
    )


def with_group(spec: DatasetSpec, column: str | None) -> DatasetSpec:
    """``spec`` with its rows grouped by ``column`` (``--gauc-group``; None: the spec's own ``group``).

    The column is looked for in every row file before anything is read. Another group than the
    spec's is another cache (its fingerprint differs), built on first use.
    """
    if column is None or column == spec.group:
        return spec
    for path in spec.files():
        present = file_columns(spec, path)
        if column not in present:
            shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "")
            raise UserError(f"--gauc-group {column}: {path} has no column {column!r}; its columns: {shown}")
    return replace(spec, group=column, raw={**spec.raw, "group": column})


def load_dataset(
    name: str, data_dir: str | Path = "data", *, progress: bool = True, cache_dir: str | Path | None = None, group: str | None = None
) -> Dataset:
    """Dataset ``name`` (see ``find_dataset``) through its spec's memory-mapped cache; a built-in one
    is generated into ``data_dir`` first (``generated_dataset``). ``cache_dir``: see ``spec_dataset``.
    ``group``: the column that groups its rows for GAUC in place of the spec's (``with_group``)."""
    spec = find_dataset(name, data_dir)
    if spec is None:
        return generated_dataset(name, synthetic.PRESETS[name], data_dir, progress=progress, cache_dir=cache_dir, group=group)
    return spec_dataset(with_group(spec, group), progress=progress, cache_dir=cache_dir)


def generated_dataset(
    name: str, config: synthetic.SyntheticConfig, data_dir: str | Path = "data", *, progress: bool = True,
    cache_dir: str | Path | None = None, group: str | None = None
) -> Dataset:
    """The rows ``config`` generates as dataset ``name``: written to ``<data_dir>/<name>/`` on first
    use (Parquet), then read like any dataset, through its spec, encoders and cache."""
    folder = ensure_generated(config, Path(data_dir) / name)
    return spec_dataset(with_group(generated_spec(folder, name), group), progress=progress, cache_dir=cache_dir)


def spec_dataset(spec: DatasetSpec, *, progress: bool = True, cache_dir: str | Path | None = None) -> Dataset:
    """A spec's dataset: its splits memory-mapped from the cache beside the spec (built on first use),
    or under ``cache_dir`` (``--cache-dir``), or under the user's cache folder when the spec's
    folder cannot be written (see ``mtreclib.data.cache``).

    Nothing is copied into memory: the arrays are the cache's maps, the vocabularies and
    transforms were fitted on the training split when the cache was built.
    """
    base = spec.path.parent if spec.path is not None else spec.files()[0].parent
    cached = open_cache(spec, base, cache_dir=cache_dir, progress=progress)
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
