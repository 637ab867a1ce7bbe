"""Generated datasets as files, so that they are read like any other (spec, encoders, cache).

``ensure_generated(config, folder)`` writes the generator's train and test rows to ``folder`` as
Parquet in the processed layout, with each label's true probability (``builtin.GENERATED`` reads
them), and ``generated.json`` beside them recording what made them: the generator's settings, a
hash of its code and the NumPy version its random draws come from. Files made by anything else
are written again, and the cache, which watches its files, is rebuilt after them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mtreclib.core.atomic import write_json
from mtreclib.core.errors import UserError
from mtreclib.data import synthetic
from mtreclib.data.cache import locked
from mtreclib.data.processed import write_processed_parquet

MARKER = "generated.json"
FILES = ("train.parquet", "test.parquet")


def made_by(config: synthetic.SyntheticConfig) -> dict[str, Any]:
    """What generated files depend on: the settings, the generator's code, NumPy's version."""
    code = hashlib.sha1(Path(synthetic.__file__).read_bytes()).hexdigest()[:16]
    return {"config": asdict(config), "code": code, "numpy": np.__version__}


def _current(folder: Path, wanted: dict[str, Any]) -> bool:
    try:
        return json.loads((folder / MARKER).read_text()) == wanted and all((folder / name).is_file() for name in FILES)
    except (OSError, ValueError):
        return False


def ensure_generated(config: synthetic.SyntheticConfig, folder: Path) -> Path:
    """``folder`` holding the rows ``config`` generates, written now unless they are there already."""
    wanted = made_by(config)
    if _current(folder, wanted):
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {folder} for the generated dataset ({error.strerror}); --data-dir must be writable") from None
    with locked(folder):  # one writer when several processes (torchrun ranks) start together
        if not _current(folder, wanted):
            (folder / MARKER).unlink(missing_ok=True)
            data = synthetic.generate(config)
            write_processed_parquet(folder / FILES[0], data.train, data.train_search_id)
            write_processed_parquet(folder / FILES[1], data.test, data.test_search_id)
            write_json(folder / MARKER, wanted)
    return folder
