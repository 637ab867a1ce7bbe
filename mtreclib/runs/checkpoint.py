"""Run folders and self-describing checkpoints.

Each ``mtrec train`` run gets a folder of its own, ``SAVE_DIR/<dataset>_<model>/run-<N>/`` (the
next free N), so that a second run never overwrites the first one's checkpoint:

    best.pt       the best weights, with everything needed to use them (below)
    last.pt       the state after the last finished epoch, for ``--resume``
    config.yaml   the resolved configuration (a config file: ``--config`` reads it back)
    results.json  the results record

``best.pt`` describes itself, like Hugging Face's ``config.json`` beside the weights: the model's
name and typed settings, the feature schema, the dataset's encoders (vocabularies, numerical
transforms) and the run's whole configuration travel with the weights, so evaluating,
predicting or exporting needs nothing repeated by hand. Every file is written to a temporary
name and renamed, and loads with ``torch.load(weights_only=True)`` (no pickled code).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtreclib.core.atomic import atomic_output
from mtreclib.core.errors import UserError

FORMAT = "mtreclib-checkpoint"
VERSION = 1
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
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's to fix, in one line
        raise UserError(f"{path}: not a readable mtreclib checkpoint ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an mtreclib checkpoint (written by another program?)")
    if payload.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {payload.get('version')}, this mtreclib reads version {VERSION}")
    if payload.get("kind") != kind:
        raise UserError(f"{path}: a {payload.get('kind')} checkpoint; expected a {kind} checkpoint")
    payload["path"] = str(path)
    return payload
