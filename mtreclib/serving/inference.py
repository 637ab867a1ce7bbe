"""A trained model ready to use: its checkpoint loaded into the model, its encoders and its settings.

``load_checkpoint`` rebuilds everything from the self-describing ``best.pt`` (its
``RunDescription``, see ``mtreclib.runs.checkpoint``): the model from its registered name, typed
settings and feature schema; the encoders (vocabularies, numerical transforms) that turn raw rows
into the ids and features it was trained on. ``Inference.probabilities`` scores encoded arrays
and ``score_table`` raw rows through ``mtreclib.scoring``, as evaluation and training do, at the
run's precision, so that a row gets the same probability whichever way it comes in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mtreclib.config.experiment import ExperimentConfig
from mtreclib.core.device import resolve_device
from mtreclib.core.errors import UserError
from mtreclib.core.metrics import task_scores
from mtreclib.core.schema import FeatureSchema
from mtreclib.data.encoders import Encoders
from mtreclib.data.encoding import Place
from mtreclib.data.table import MultiTaskTable
from mtreclib.models import MultiTaskModel, create_model
from mtreclib.runs.checkpoint import ModelCheckpoint
from mtreclib.scoring import logits


@dataclass
class Inference:
    """A checkpoint's model in evaluation mode, with what encodes rows for it.

    Attributes:
        model: the trained model, on ``device``, in eval mode.
        encoders: the dataset's fitted encoders (what ``mtrec train`` fitted on its training split).
        encoding: the same encoders as plain data, as the checkpoint holds them.
        config: the training run's configuration.
        dataset: the name of the dataset it was trained on.
        path: the checkpoint file.
        epoch: the epoch whose weights these are.
        device: where the model runs.
        batch_size: rows per forward pass (default: the training batch size).
        precision: the forward passes' precision, the training run's (``fp32`` or ``bf16``).
    """

    model: MultiTaskModel
    encoders: Encoders
    encoding: dict[str, Any]
    config: ExperimentConfig
    dataset: str
    path: Path
    epoch: int
    device: torch.device
    batch_size: int
    precision: str

    @property
    def schema(self) -> FeatureSchema:
        return self.model.schema

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.schema.task_names

    @property
    def model_name(self) -> str:
        return self.config.model

    def feature_columns(self) -> tuple[str, ...]:
        """The file columns a row to score needs (a side table's columns on the rows themselves)."""
        return self.encoders.spec.columns_needed(labels=False, inline=True)

    def check_raw_rows(self) -> None:
        """Refuse to encode raw rows when the encoders do not describe the model's features
        (a model trained on in-memory arrays of another width carries no such description)."""
        described = self.encoders.schema()
        schema = self.schema
        if (described.field_dims, described.numerical_num, described.bags) != (schema.field_dims, schema.numerical_num, schema.bags):
            raise UserError(
                f"{self.path}: the checkpoint's encoders do not describe its model's features (trained on in-memory arrays?); "
                "it can score encoded arrays only"
            )

    def encode(self, table: pa.Table, place: Place | None = None) -> MultiTaskTable:
        """Raw rows (the feature columns; others are ignored) as the arrays the model reads."""
        self.check_raw_rows()
        missing = [name for name in self.feature_columns() if name not in table.column_names]
        if missing:
            where = place.file if place is not None else "the rows"
            raise UserError(f"{where}: no column {missing[0]!r}; the model reads {', '.join(self.feature_columns())}")
        return self.encoders.encode(table, place or Place("the rows", 1, lines=False), labels=False, inline=True)

    @torch.inference_mode()
    def probabilities(self, rows: MultiTaskTable) -> np.ndarray:
        """(n, T) float32 probabilities of encoded rows, in their order; a regression task's column
        holds its prediction (the model's output, on the target's transformed scale)."""
        scores = logits(self.model, rows, batch_size=self.batch_size, device=self.device, precision=self.precision)  # (n, T)
        return task_scores(scores, self.schema.task_types).numpy()

    def score_table(self, table: pa.Table, place: Place | None = None) -> np.ndarray:
        """(n, T) probabilities of raw rows."""
        return self.probabilities(self.encode(table, place))


def _as_device(device: str | torch.device) -> torch.device:

    return device if isinstance(device, torch.device) else resolve_device(device)


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu", batch_size: int | None = None) -> Inference:
    """The model of a checkpoint (a ``best.pt``, or a run folder meaning its ``best.pt``), ready to score.

    A checkpoint of a model this installation does not have, or whose weights do not fit the
    model its settings describe, is a user error naming the file.
    """
    saved = ModelCheckpoint.read(path)
    where, run = saved.path, saved.run
    config = run.config
    try:
        model = create_model(config.model, run.schema, config.model_config)
        encoders = Encoders.from_dict(run.encoding)
    except UserError as error:
        raise UserError(f"{where}: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{where}: an incomplete or damaged checkpoint ({type(error).__name__}: {error})") from None
    try:
        model.load_state_dict(saved.state_dict)
    except RuntimeError as error:
        raise UserError(f"{where}: the weights do not fit model {config.model} ({str(error).splitlines()[0]})") from None
    if batch_size is not None and batch_size < 1:
        raise UserError(f"batch size must be positive, got {batch_size}")
    device = _as_device(device)
    model.to(device).eval()
    return Inference(
        model=model,
        encoders=encoders,
        encoding=run.encoding,
        config=config,
        dataset=run.dataset,
        path=Path(where),
        epoch=saved.epoch,
        device=device,
        batch_size=batch_size or config.train.batch_size,
        precision=config.train.precision,
    )
