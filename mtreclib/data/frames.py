"""In-memory tables as a dataset folder, so that they are read like any other (spec, encoders, cache).

``write_frames(tables, spec, folder)`` writes each split's table (PyArrow) to ``folder/<split>.parquet``
and the spec, its file keys pointing there, to ``folder/dataset.yaml``. ``mtreclib.train`` uses it
for DataFrames: the run then reads the folder through the same path as ``mtrec train --dataset``,
and its checkpoint can be evaluated or resumed later from the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from mtreclib.core.atomic import atomic_output
from mtreclib.core.errors import UserError

SPLITS = ("train", "valid", "test")
# What says where the rows are and how they are stored: replaced by the written files.
FILE_KEYS = ("format", "csv", "train", "valid", "test", "source", "split")
HEADER = "# Written by mtreclib.train from in-memory tables; written again by the next such call.\n"


def write_frames(tables: Mapping[str, pa.Table], spec: Mapping[str, Any], folder: str | Path) -> Path:
    """Write ``tables`` (split name -> table; ``train`` and ``test``, optionally ``valid``) and
    ``spec`` (a dataset spec's keys; its file keys are replaced) into ``folder``; returns the
    spec file's path.

    A ``folder`` holding a ``dataset.yaml`` that this function did not write is refused: it is
    someone's dataset.
    """
    folder = Path(folder)
    unknown = [name for name in tables if name not in SPLITS]
    if unknown:
        raise UserError(f"dataset: {unknown[0]!r} is not a split; give tables for {', '.join(SPLITS)} (valid optional)")
    missing = [name for name in ("train", "test") if name not in tables]
    if missing:
        raise UserError(f"dataset: no {missing[0]!r} table; give tables for train and test (valid optional)")
    if spec.get("tables"):
        raise UserError("spec: tables: side tables are read from files; give a spec file whose tables' files exist instead of tables in memory")
    spec_path = folder / "dataset.yaml"
    if spec_path.is_file() and not spec_path.read_text().startswith(HEADER):
        raise UserError(f"{spec_path}: a dataset folder mtreclib.train did not write; name the tables' dataset otherwise (the spec's name:)")
    content = {key: value for key, value in spec.items() if key not in FILE_KEYS}
    content.update(format="parquet", **{name: f"{name}.parquet" for name in SPLITS if name in tables})
    for name in SPLITS:
        if name in tables:
            with atomic_output(folder / f"{name}.parquet") as temporary:
                pq.write_table(tables[name], temporary)
        else:
            (folder / f"{name}.parquet").unlink(missing_ok=True)  # a valid split of an earlier call
    with atomic_output(spec_path) as temporary:
        temporary.write_text(HEADER + yaml.safe_dump(content, sort_keys=False))
    return spec_path
