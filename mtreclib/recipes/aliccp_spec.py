"""What the Ali-CCP recipe writes: the impression rows' columns, the side table's files, and the ``dataset.yaml``.

Per split, ``<split>.parquet`` holds one row per impression and ``common_<split>.parquet`` one
row per common-features line (aliccp_common.SIDE_SCHEMA); the spec names the second as the side
table ``common``, joined to each impression by ``common_feature_index``, so that the ~500 user
history features of a line are stored once rather than on each of its ~58 impressions.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import yaml

from mtreclib.recipes.aliccp_common import HISTORIES
from mtreclib.recipes.aliccp_features import FIELDS, weight_column
from mtreclib.recipes.aliccp_files import DATASET_PAGE, SPLITS

NAME = "AliCCP"
TABLE = "common"
KEY = "common_feature_index"
# The fields on the impression rows: all but the user histories, which live in the side table.
ROW_FIELDS = tuple(field for field in FIELDS if field not in HISTORIES)


def rows_name(split: str) -> str:
    return f"{split}.parquet"


def table_name(split: str) -> str:
    return f"{TABLE}_{split}.parquet"


OUTPUTS = (*(rows_name(s) for s in SPLITS), *(table_name(s) for s in SPLITS), "dataset.yaml")  # the spec last


def rows_schema() -> pa.Schema:
    """The columns of ``<split>.parquet``, in order."""
    columns = [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field(KEY, pa.int64(), nullable=False),
        pa.field("click", pa.int8(), nullable=False),
        pa.field("conversion", pa.int8(), nullable=False),
    ]
    for field in ROW_FIELDS:
        if field.multi:
            columns.append(pa.field(field.name, pa.list_(pa.int64()), nullable=False))
            columns.append(pa.field(weight_column(field), pa.list_(pa.float32()), nullable=False))
        else:
            columns.append(pa.field(field.name, pa.int64()))
    return pa.schema(columns)


ROWS_SCHEMA = rows_schema()


def dataset_spec(name: str = NAME) -> dict:
    """The ``dataset.yaml`` content (docs/dataset-spec.md) for the files this recipe writes."""

    def bag(field) -> dict:
        # Sum of the features' embeddings weighted by their values (log counts; 1 for 210), as
        # the ESMM authors' x-deeplearning model pools every field.
        table = {"table": TABLE} if field in HISTORIES else {}
        return {"name": field.name, **table, "weights": weight_column(field), "pooling": "sum", "role": field.role}

    return {
        "name": name,
        "format": "parquet",
        "train": rows_name("train"),
        "test": rows_name("test"),
        "tables": {TABLE: {"key": KEY, **{split: table_name(split) for split in SPLITS}}},
        "categorical": [{"name": f.name, "role": f.role} for f in FIELDS if not f.multi],
        "multi_valued": [bag(f) for f in FIELDS if f.multi],
        "numerical": [],
        "labels": ["click", "conversion"],
        "implies": {"conversion": "click"},
        "group": KEY,
    }


_SPEC_HEADER = """\
# Ali-CCP (Alibaba Click and Conversion Prediction; Ma et al., ESMM, SIGIR 2018), written by
# `mtrec preprocess --dataset {name}` (mtreclib/recipes/aliccp.py) from {sources}
# of {page}. Columns are named by the paper's field ids; see docs/recipes/aliccp.md.
# The user histories (109_14, 110_14, 127_14, 150_14) are stored once per common-features line
# in the side table `common`, joined to each impression by its common_feature_index.
# There is no validation file: `mtrec train` holds out --valid-fraction of train.
# conversion implies click, so the conversion task over all impressions is CTCVR.
"""


def write_spec(path: Path, name: str, sources: str) -> None:
    text = _SPEC_HEADER.format(name=name, sources=sources, page=DATASET_PAGE)
    path.write_text(text + yaml.safe_dump(dataset_spec(name), sort_keys=False, default_flow_style=None, width=120))
