"""Recipes: a public dataset's raw download, exactly as its publisher serves it, to a dataset folder.

``mtrec preprocess --dataset NAME --data-dir DIR`` finds the recipe registered for ``NAME`` and
runs it. A recipe reads the download from ``DIR`` or ``DIR/NAME/`` (packed or unpacked),
streaming in bounded memory, and writes ``DIR/NAME/``: the splits as Parquet files and a
``dataset.yaml`` (docs/dataset-spec.md) that ``mtrec train --dataset NAME`` reads. Bad input
stops it with one ``DataError`` line naming the file, line and column, and leaves no output:
everything is written under a temporary name and renamed when complete.

What every recipe shares is the kit (``mtreclib.recipes.kit``). Every other module or package
here is a recipe: a class registered with ``kit.register_recipe``, importing only the kit (and
its own helpers), never this package. Importing this package imports each of them, so a new
recipe is one new file here and nothing else.
"""

import importlib
import pkgutil

from mtreclib.recipes.kit import Recipe, Report, find_recipe, recipe_classes, recipe_names, register_recipe, run_recipe

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "kit" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Recipe", "Report", "find_recipe", "recipe_classes", "recipe_names", "register_recipe", "run_recipe"]
