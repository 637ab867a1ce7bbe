"""The Python API, for notebooks and services: train, load, predict, evaluate, export.

    import mtreclib

    run = mtreclib.train(dataset="myshop", model="mmoe", epochs=5)   # mtrec train's settings
    model = run.model                                   # or:
    model = mtreclib.load("chkpt/myshop_mmoe/run-1")   # a run folder or its best.pt
    scores = model.predict(table)                       # raw rows -> (N, T) probabilities
    record = model.evaluate(split="test")               # per-task AUC and log-loss
    model.export("model.onnx")                          # for another runtime

Rows are raw values, as in the training files (strings or integers for ids, lists for
multi-valued fields, missing values where the dataset spec allows them): the checkpoint's
encoders turn them into ids and features, unknown ids into each field's out-of-vocabulary slot.
The README's "Using a trained model" runs this API verbatim in the tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mtreclib.config.experiment import DataConfig
from mtreclib.config.resolve import resolve
from mtreclib.core.errors import UserError
from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.data.datasets import spec_dataset, with_group
from mtreclib.data.frames import write_frames
from mtreclib.data.spec import DatasetSpec
from mtreclib.data.table import MultiTaskTable
from mtreclib.runs.record import Metrics, RunRecord
from mtreclib.serving.encoders_file import export_with_encoders
from mtreclib.serving.evaluation import evaluate_checkpoint
from mtreclib.serving.export import FORMATS, SUFFIXES, ExportReport
from mtreclib.serving.inference import Inference, load_checkpoint
from mtreclib.serving.streaming import PredictionSummary, predict_file
from mtreclib.training.experiment import run_experiment


def _as_table(rows: Any) -> pa.Table:
    """A PyArrow table of raw rows: a table, a record batch, a pandas DataFrame or a mapping of columns."""
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if type(rows).__module__.startswith("pandas") and hasattr(rows, "columns"):
        return pa.Table.from_pandas(rows, preserve_index=False)
    if isinstance(rows, Mapping):
        return pa.table({str(name): values for name, values in rows.items()})
    raise TypeError(f"expected rows as a pyarrow Table, a pandas DataFrame or a mapping of column name -> values, got {type(rows).__name__}")


class Model:
    """A trained model with its encoders; ``mtreclib.load`` makes one.

    Attributes:
        tasks: the task names, the order of the probability columns.
        features: the raw columns a row needs.
        schema: the encoded features and tasks, as the model sees them.
        module: the PyTorch model (``forward`` -> logits), in eval mode.
        inference: the loaded checkpoint behind this object.
    """

    def __init__(self, inference: Inference):
        self.inference = inference

    def __repr__(self) -> str:
        i = self.inference
        return f"<mtreclib.Model {i.model_name} trained on {i.dataset} (epoch {i.epoch}), tasks {', '.join(self.tasks)}, from {i.path}>"

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.inference.tasks

    @property
    def features(self) -> tuple[str, ...]:
        return self.inference.feature_columns()

    @property
    def schema(self) -> FeatureSchema:
        return self.inference.schema

    @property
    def module(self) -> torch.nn.Module:
        return self.inference.model

    def encode(self, rows: Any) -> MultiTaskTable:
        """Raw rows as the arrays the model reads (ids, transformed numerical features, bags)."""
        return self.inference.encode(_as_table(rows))

    def predict(self, rows: Any) -> Any:
        """Per-task probabilities of raw rows, in their order: an (N, T) float32 array, columns ``tasks``
        (a regression task's column: its prediction, on the target's transformed scale).

        ``rows``: a pyarrow Table, a mapping of column name -> values, or a pandas DataFrame
        (then the result is a DataFrame with a column per task and the rows' index). Label
        columns and any other columns are ignored.
        """
        scores = self.inference.score_table(_as_table(rows))
        if type(rows).__module__.startswith("pandas") and hasattr(rows, "index"):
            import pandas

            return pandas.DataFrame(scores, columns=list(self.tasks), index=rows.index)
        return scores

    def predict_encoded(
        self, categorical: Any, numerical: Any = None, bags: Sequence[Sequence[Any]] = ()
    ) -> np.ndarray:
        """Per-task probabilities of encoded rows, the exported module's inputs: (N, F) ids,
        (N, M) numerical features and, per multi-valued field, ``(values, offsets)`` or
        ``(values, offsets, weights)`` with ``offsets`` of N + 1 entries from 0 -> (N, T)."""
        schema = self.schema
        if categorical is None:  # a schema of multi-valued fields alone
            n = len(numerical) if numerical is not None else len(bags[0][1]) - 1 if bags else 0
            categorical = np.zeros((n, 0), np.int64)
        categorical = np.asarray(categorical, dtype=np.int64).reshape(-1, schema.field_num)
        n = len(categorical)
        numerical = np.zeros((n, 0), np.float32) if numerical is None else np.asarray(numerical, dtype=np.float32).reshape(n, -1)
        if numerical.shape[1] != schema.numerical_num:
            raise ValueError(f"expected {schema.numerical_num} numerical features, got {numerical.shape[1]}")
        for f, (name, dim) in enumerate(zip(schema.field_names, schema.field_dims)):
            bad = (categorical[:, f] < 0) | (categorical[:, f] >= dim)
            if bad.any():
                raise ValueError(f"field {name}: id {categorical[bad.argmax(), f]} outside its vocabulary 0..{dim - 1}")
        if len(bags) != schema.bag_num:
            raise ValueError(f"expected {schema.bag_num} multi-valued fields ({', '.join(b.name for b in schema.bags)}), got {len(bags)}")
        encoded_bags = []
        for field, bag in zip(schema.bags, bags):
            values, offsets = np.asarray(bag[0], dtype=np.int64), np.asarray(bag[1], dtype=np.int64)
            weights = np.asarray(bag[2], dtype=np.float32) if len(bag) > 2 and bag[2] is not None else None
            if len(offsets) != n + 1 or offsets[0] != 0 or offsets[-1] != len(values) or (np.diff(offsets) < 0).any():
                raise ValueError(f"{field.name}: offsets must be {n + 1} non-decreasing positions from 0 to the number of values")
            if len(values) and (values.min() < 0 or values.max() >= field.vocab_size):
                raise ValueError(f"{field.name}: ids outside its vocabulary 0..{field.vocab_size - 1}")
            if field.weighted and weights is None:
                raise ValueError(f"{field.name}: a weighted field; give (values, offsets, weights)")
            encoded_bags.append(Bag(values, offsets, weights if field.weighted else None))
        return self.inference.probabilities(MultiTaskTable(categorical, numerical, None, bags=tuple(encoded_bags)))

    def predict_file(
        self, input_path: str | os.PathLike, output: str | os.PathLike, *, id_columns: Sequence[str] = (), **options: Any
    ) -> PredictionSummary:
        """``mtrec predict``: score a Parquet or CSV file into another, in bounded memory.

        ``options``: ``delimiter``, ``header`` (CSV input), ``progress``, ``chunk_bytes``
        (see ``mtreclib.serving.streaming.predict_file``).
        """
        return predict_file(self.inference, input_path, output, id_columns=id_columns, **options)

    def evaluate(self, dataset: str | None = None, *, data_dir: str | os.PathLike | None = None, split: str = "test") -> RunRecord:
        """Per-task AUC and log-loss on a split of a dataset (default: the one it was trained on).

        The record's ``tasks[name].auc`` and ``.logloss`` hold the figures (a regression task's
        ``.rmse`` and ``.mae``); ``record.write(path)``
        writes the JSON of ``mtrec train --results``.
        """

        return evaluate_checkpoint(self.inference, dataset, data_dir=None if data_dir is None else str(data_dir), split=split, progress=False)

    def export(
        self, path: str | os.PathLike, format: str | None = None, *, encoders: str | os.PathLike | None = None  # noqa: A002 - the CLI flag's name
    ) -> ExportReport:
        """Write the model for another runtime (``onnx``, ``torchscript``, ``pt2``; default from the suffix),
        and its encoders file (``encoders``, default ``mmoe.onnx`` -> ``mmoe.encoders.json``; docs/serving-encoders.md)."""
        fmt = format or export_format(Path(path))
        return export_with_encoders(self.inference, path, fmt, encoders)[0]


def export_format(path: Path) -> str:
    """The export format a file name's suffix names."""
    for fmt, suffix in SUFFIXES.items():
        if path.suffix.lower() == suffix:
            return fmt
    known = ", ".join(f"{suffix} ({fmt})" for fmt, suffix in SUFFIXES.items())
    raise ValueError(f"{path}: cannot tell the format from the suffix ({known}); name one of {', '.join(FORMATS)}")


def load(path: str | os.PathLike, *, device: str = "cpu", batch_size: int | None = None) -> Model:
    """The trained model of a checkpoint: a run folder (``SAVE_DIR/<dataset>_<model>/run-N``) or its ``best.pt``.

    ``device``: where it runs (``cpu``, ``cuda``, ``auto``). ``batch_size``: rows per forward
    pass (default: the training batch size).
    """
    return Model(load_checkpoint(path, device=device, batch_size=batch_size))


@dataclass(frozen=True)
class TrainedRun:
    """What ``mtreclib.train`` returns.

    Attributes:
        model: the trained model (its best validation epoch), loaded from the run's ``best.pt``:
            the object ``mtreclib.load(run_dir)`` gives.
        record: the results record (``mtrec train --results``' JSON): test metrics per task,
            history per epoch, configuration, rows, speed.
        run_dir: the run folder, ``SAVE_DIR/<dataset>_<model>/run-N`` (best.pt, last.pt,
            config.yaml, results.json).
    """

    model: Model
    record: RunRecord
    run_dir: Path

    @property
    def metrics(self) -> dict[str, Metrics]:
        """Per task, its test metrics (``metrics["click"].auc``)."""
        return self.record.tasks


def _frames_spec(spec: Any) -> dict[str, Any]:
    """The keys of the spec that goes with in-memory tables: a spec file, a ``DatasetSpec`` or a mapping."""
    if spec is None:
        raise UserError("dataset: tables in memory need a spec=: a spec file, a DatasetSpec or a mapping of its keys (what the columns mean)")
    if isinstance(spec, (str, os.PathLike)):
        spec = DatasetSpec.load(spec)
    if isinstance(spec, DatasetSpec):
        named = {"name": spec.name} if spec.path is not None else {}  # a spec file's folder names its dataset
        return {**named, **spec.raw}
    if isinstance(spec, Mapping):
        return dict(spec)
    raise TypeError(f"spec: expected a spec file's path, a DatasetSpec or a mapping of spec keys, got {type(spec).__name__}")


def train(
    dataset: str | os.PathLike | DatasetSpec | Mapping[str, Any] | None = None,
    model: str | None = None,
    *,
    spec: str | os.PathLike | DatasetSpec | Mapping[str, Any] | None = None,
    **settings: Any,
) -> TrainedRun:
    """``mtrec train`` from Python: train ``model`` on ``dataset``; returns the trained model and its record.

    ``dataset``: what ``--dataset`` takes (a built-in name, a folder under ``data_dir``, a
    spec file's path); a dataset folder's ``Path``; a ``DatasetSpec``; or tables in memory,
    ``{"train": ..., "test": ...}`` (``"valid"`` optional) of pandas DataFrames or PyArrow
    tables, with ``spec``: a spec file, a ``DatasetSpec`` or a mapping of spec keys (its
    ``name:`` required; any file keys are ignored). Tables are written as Parquet, with the spec, to ``data_dir/<name>/`` and read
    from there like any dataset (so the run can be evaluated and resumed later); a folder of
    that name this function did not write is refused. None: the CLI's default dataset.

    ``model`` and ``settings``: ``mtrec train``'s settings by their keys, the flags' names with
    underscores (``epochs=5``, ``embed_dim=16``, ``mto="pcgrad"``, ``progress=False``); an
    unknown key is refused naming the closest. Outputs go where the CLI's go: a run folder
    under ``save_dir`` (default ``chkpt`` in the working directory), datasets under
    ``data_dir`` (default ``data``); ``results=FILE`` also writes the record's JSON.
    ``save=False`` is refused: the model returned is the run's checkpoint.
    """
    values = {key: os.fspath(value) if isinstance(value, os.PathLike) else value for key, value in settings.items()}  # data_dir=Path(...)
    if model is not None:
        values["model"] = model
    inline, frames = None, None
    if isinstance(dataset, Mapping):
        spec_keys = _frames_spec(spec)
        if not spec_keys.get("name"):
            raise UserError("spec: name: missing; tables in memory are written to data_dir/<name>/, so the spec must name its dataset")
        frames = Path(str(values.get("data_dir", DataConfig.data_dir))) / str(spec_keys["name"])
        values["dataset"] = str(frames / "dataset.yaml")
    elif spec is not None:
        raise UserError("spec: only with tables in memory (dataset={'train': ..., 'test': ...}); a dataset by name or path has its own spec")
    elif isinstance(dataset, DatasetSpec):
        if dataset.path is not None:
            values["dataset"] = str(dataset.path)
        else:
            values["dataset"], inline = dataset.name, dataset  # a spec of no file: loaded as it is
    elif isinstance(dataset, os.PathLike) and Path(dataset).is_dir():
        values["dataset"] = str(Path(dataset) / "dataset.yaml")  # a dataset folder by its path
    elif isinstance(dataset, (str, os.PathLike)):
        values["dataset"] = str(dataset)
    elif dataset is not None:
        raise TypeError(
            f"dataset: expected a name or spec path, a DatasetSpec, or {{'train': ..., 'test': ...}} tables, got {type(dataset).__name__}"
        )
    config = resolve(values)  # every setting checked before a file is written
    if not config.run.save:
        raise UserError("save=False: mtreclib.train returns the model of the run's checkpoint; let it save one")
    if frames is not None:
        write_frames({split: _as_table(rows) for split, rows in dataset.items()}, spec_keys, frames)
    # A spec of no file is read as load_dataset reads a spec file: --gauc-group's column, --cache-dir's folder.
    loaded = None
    if inline is not None:
        loaded = spec_dataset(with_group(inline, config.data.gauc_group), progress=config.run.progress, cache_dir=config.data.cache_dir)
    record = run_experiment(config, dataset=loaded)
    if config.run.results:
        record.write(config.run.results)
    if record.checkpoint is None:
        raise UserError(f"{config.run.save_dir}: the run kept no checkpoint")
    return TrainedRun(load(record.checkpoint, device=config.run.device), record, Path(record.checkpoint).parent)
