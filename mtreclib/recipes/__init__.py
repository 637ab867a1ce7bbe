"""Recipes: a public dataset's raw download, exactly as its publisher serves it, to a dataset folder.

``mtrec preprocess --dataset NAME --data-dir DIR`` finds the recipe registered for ``NAME`` and
runs it. A recipe reads the download from ``DIR`` or ``DIR/NAME/`` (packed or unpacked),
streaming in bounded memory, and writes ``DIR/NAME/``: the splits as Parquet files and a
``dataset.yaml`` (docs/dataset-spec.md) that ``mtrec train --dataset NAME`` reads. Bad input
stops it with one ``DataError`` line naming the file, line and column, and leaves no output:
everything is written under a temporary name and renamed when complete.

What every recipe shares is the kit (``mtreclib.recipes.kit``); each recipe is one module that
registers itself with ``register_recipe``; importing this package registers them all.
"""

from mtreclib.recipes.kit import Recipe, Report, find_recipe, recipe_classes, recipe_names, run_recipe
from mtreclib.recipes.registry import register_recipe

# Importing each recipe registers it; they import register_recipe from this package, bound above.
from mtreclib.recipes import aliccp, aliexpress, census, kuairand  # noqa: E402, F401  isort: skip

__all__ = ["Recipe", "Report", "find_recipe", "recipe_classes", "recipe_names", "register_recipe", "run_recipe"]
