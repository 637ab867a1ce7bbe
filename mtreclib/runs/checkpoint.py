"""Run folders and self-describing checkpoints.

Each ``mtrec train`` run gets a folder of its own, ``SAVE_DIR/<dataset>_<model>/run-<N>/`` (the
next free N), so that a second run never overwrites the first one's checkpoint:

    best.pt       the best weights, with everything needed to use them (below)
    last.pt       the state after the last finished epoch, for ``--resume``
    config.yaml   the resolved configuration (a config file: ``--config`` reads it back)
    results.json  the results record

``best.pt`` describes itself, like Hugging Face's ``config.json`` beside the weights: a
``RunDescription`` travels with the weights (the run's configuration, which names the model and
holds its typed settings; the feature schema; the dataset's encoders: vocabularies, numerical
transforms), each once, so evaluating, predicting or exporting needs nothing repeated by hand.
``last.pt`` holds the configuration and the trainer's state. Every file is written to a
temporary name and renamed, and loads with ``torch.load(weights_only=True)`` (no pickled code).

Format versions: 2 (this one) keeps the description under ``run``; version 1 kept the schema,
the encoding and the configuration at the top level, with the model's name and settings a
second time beside it. Both are read; a file of another version is refused in one line.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtreclib.config.experiment import ExperimentConfig
from mtreclib.core.atomic import atomic_output
from mtreclib.core.errors import UserError
from mtreclib.core.schema import FeatureSchema

FORMAT = "mtreclib-checkpoint"
VERSION = 2
READABLE = (1, 2)
BEST = "best.pt"
LAST = "last.pt"
CONFIG = "config.yaml"
RESULTS = "results.json"
_RUN = re.compile(r"run-(\d+)")


def safe_name(text: str) -> str:
    """A dataset or model name as part of a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


@dataclass(frozen=True)
class RunDirectory:
    """One run's folder."""

    path: Path

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    @staticmethod
    def parent(save_dir: str | os.PathLike, dataset: str, model: str) -> Path:
        return Path(save_dir) / f"{safe_name(dataset)}_{safe_name(model)}"

    @classmethod
    def existing(cls, save_dir: str | os.PathLike, dataset: str, model: str) -> list[RunDirectory]:
        """The runs of ``dataset`` and ``model`` in ``save_dir``, oldest first."""
        parent = cls.parent(save_dir, dataset, model)
        if not parent.is_dir():
            return []
        numbered = [(int(m.group(1)), p) for p in parent.iterdir() if p.is_dir() and (m := _RUN.fullmatch(p.name))]
        return [cls(p) for _, p in sorted(numbered)]

    @classmethod
    def create(cls, save_dir: str | os.PathLike, dataset: str, model: str) -> RunDirectory:
        """A new, empty run folder: the next free number (two processes never get the same one)."""
        parent = cls.parent(save_dir, dataset, model)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UserError(f"--save-dir {save_dir}: cannot make the folder {parent} (a file is in the way)") from None
        except PermissionError:
            raise UserError(f"--save-dir {save_dir}: no permission to make {parent}") from None
        runs = cls.existing(save_dir, dataset, model)
        number = int(runs[-1].path.name.split("-")[1]) + 1 if runs else 1
        while True:
            path = parent / f"run-{number}"
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                number += 1



@dataclass(frozen=True)
class RunDescription:
    """What a model checkpoint's weights are: the metadata that travels with them, each part once.

    Attributes:
        dataset: the name of the dataset the model was trained on.
        config: the run's resolved configuration (the model's name and typed settings in it).
        schema: the feature schema the model was built for.
        encoding: the dataset's fitted encoders as plain data (``Encoders.to_dict``).
    """

    dataset: str
    config: ExperimentConfig
    schema: FeatureSchema
    encoding: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "config": self.config.to_dict(), "schema": self.schema.describe(), "encoding": self.encoding}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunDescription:
        config = ExperimentConfig.from_dict(data["config"])
        return cls(
            dataset=str(data.get("dataset", config.data.dataset)),
            config=config,
            schema=FeatureSchema.from_description(data["schema"]),
            encoding=data["encoding"],
        )


@dataclass(frozen=True)
class ModelCheckpoint:
    """A ``best.pt``: the weights and what they are.

    Attributes:
        run: the weights' description.
        state_dict: the model's weights.
        epoch: the epoch these weights are from.
        valid: per task, the validation metrics of that epoch (None without a validation split).
        path: the file it was read from.
    """

    run: RunDescription
    state_dict: dict[str, torch.Tensor]
    epoch: int = 0
    valid: dict[str, Any] | None = None
    path: Path | None = None

    def save(self, path: Path) -> None:
        save(path, {"kind": "model", "run": self.run.to_dict(), "state_dict": self.state_dict, "epoch": self.epoch, "valid": self.valid})

    @classmethod
    def read(cls, path: str | os.PathLike) -> ModelCheckpoint:
        """A model checkpoint (or a run folder's ``best.pt``) of any readable version."""
        payload = load(path, "model")
        where = payload["path"]
        # Version 1 kept the description's parts at the top level.
        description = payload["run"] if payload["version"] >= 2 else payload
        try:
            run = RunDescription.from_dict(description)
            state_dict = payload["state_dict"]
        except UserError as error:
            raise UserError(f"{where}: {error}") from None
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"{where}: an incomplete or damaged checkpoint ({type(error).__name__}: {error})") from None
        return cls(run, state_dict, int(payload.get("epoch", 0)), payload.get("valid"), Path(where))


def save(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary name in the same folder, then rename over ``path``."""
    with atomic_output(path) as temporary:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, temporary)


def load(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """A checkpoint file (``kind`` ``"model"`` or ``"resume"``); a run folder means its ``best.pt`` or ``last.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / (BEST if kind == "model" else LAST)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint (expected a run folder or its {BEST})")
    expected = f"expected a run folder (SAVE_DIR/DATASET_MODEL/run-N) or its {BEST}"
    if not zipfile.is_zipfile(path):  # what torch.save writes; a Parquet, CSV or text file is not one
        raise UserError(f"{path}: not a readable mtreclib checkpoint: not a file PyTorch saved ({expected})")
    try:
        with warnings.catch_warnings():  # torch's warnings about pickle protocols are noise for a file that is not ours
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises turning off the safe loader: never the advice for a file mtreclib did not write
        raise UserError(f"{path}: not an mtreclib checkpoint: a PyTorch file holding more than tensors and plain values ({expected})") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix, in one line
        raise UserError(f"{path}: not a readable mtreclib checkpoint ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an mtreclib checkpoint (written by another program?)")
    if payload.get("version") not in READABLE:
        readable = " and ".join(str(v) for v in READABLE)
        raise UserError(f"{path}: checkpoint format version {payload.get('version')}; this mtreclib reads versions {readable}")
    if payload.get("kind") != kind:
        raise UserError(f"{path}: a {payload.get('kind')} checkpoint; expected a {kind} checkpoint")
    payload["path"] = str(path)
    return payload
