"""Built-in dataset specs: layouts mtreclib reads without a dataset.yaml.

- The AliExpress processed layout of the original MTReclib (``train.csv``, ``test.csv``).
- The generated datasets (``synthetic``, ``synthetic_realistic``): the same layout written as
  Parquet (``train.parquet``, ``test.parquet``) with each label's true probability beside it,
  so that they go through the same spec, encoders and cache as any other dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtreclib.data.processed import CATEGORICAL_COLUMNS, LABEL_COLUMNS, NUMERICAL_COLUMNS, PROBABILITY_COLUMNS
from mtreclib.data.spec import DatasetSpec

# The AliExpress processed layout of the original MTReclib: integer ids used as they are (the
# training maximum + 2 is the vocabulary, larger test ids go to the last slot), 63 numerical
# features that must all be present, conversion recorded only on clicked rows, one search page
# per search_id. categorical_1 .. 9 come from the raw user (search page) file, 10 .. 16 from the
# item file (recipes/aliexpress.py; the synthetic generator follows the same split): their roles.
ALIEXPRESS_ROLES = ("user",) * 9 + ("item",) * 7
ALIEXPRESS: dict[str, Any] = {
    "format": "csv",
    "train": "train.csv",
    "test": "test.csv",
    "categorical": [{"name": name, "vocabulary": "identity", "role": role} for name, role in zip(CATEGORICAL_COLUMNS, ALIEXPRESS_ROLES)],
    "numerical": list(NUMERICAL_COLUMNS),
    "labels": list(LABEL_COLUMNS),
    "implies": {"conversion": "click"},
    "group": "search_id",
}

# The generator's rows in that layout; the identity ids give the same vocabularies (training
# maximum + 2) and the same out-of-vocabulary slot for larger test ids.
GENERATED: dict[str, Any] = {
    **ALIEXPRESS,
    "format": "parquet",
    "train": "train.parquet",
    "test": "test.parquet",
    "labels": [{"name": name, "probability": probability} for name, probability in zip(LABEL_COLUMNS, PROBABILITY_COLUMNS)],
}


def is_aliexpress_folder(folder: Path) -> bool:
    return (folder / "train.csv").is_file() and (folder / "test.csv").is_file() and not (folder / "dataset.yaml").exists()


def aliexpress_spec(folder: Path | None = None, name: str = "aliexpress") -> DatasetSpec:
    """The built-in spec of the AliExpress processed layout in ``folder`` (no files: the layout alone)."""
    if folder is None:
        return DatasetSpec.from_dict(ALIEXPRESS, name=name, files=False)
    return DatasetSpec.from_dict(ALIEXPRESS, name=name, base=folder)


def generated_spec(folder: Path, name: str) -> DatasetSpec:
    """The spec of generated data written to ``folder`` (``mtreclib.data.generated``)."""
    return DatasetSpec.from_dict(GENERATED, name=name, base=folder)
