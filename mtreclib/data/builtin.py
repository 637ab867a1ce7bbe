"""Built-in dataset specs: layouts mtreclib reads without a dataset.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtreclib.data.processed import CATEGORICAL_COLUMNS, LABEL_COLUMNS, NUMERICAL_COLUMNS
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


def is_aliexpress_folder(folder: Path) -> bool:
    return (folder / "train.csv").is_file() and (folder / "test.csv").is_file() and not (folder / "dataset.yaml").exists()


def aliexpress_spec(folder: Path | None = None, name: str = "aliexpress") -> DatasetSpec:
    """The built-in spec of the AliExpress processed layout in ``folder`` (no files: the layout alone)."""
    if folder is None:
        return DatasetSpec.from_dict(ALIEXPRESS, name=name, files=False)
    return DatasetSpec.from_dict(ALIEXPRESS, name=name, base=folder)
