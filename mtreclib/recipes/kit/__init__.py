"""The recipe kit: what every recipe shares, one module each.

- ``recipe``: the ``Recipe`` base class (find, convert, specs; the kit runs them) and ``RecipeConfig``;
- ``registry``: ``register_recipe``, ``find_recipe``, ``run_recipe``;
- ``files``: ``RawFile`` (a file, or a member of archives), ``locate``, ``read_header``;
- ``reading``: ``read_pieces``, a raw file's rows in bounded memory;
- ``checks``: one-line errors for values the parser cannot check;
- ``output``: ``Output``, the folder built beside its place and moved in when complete, and its sinks;
- ``report``: ``Report``, what a run wrote, counted and read.
"""

from mtreclib.recipes.kit.checks import binary, distinct_lines, expect, first, integers, sort_distinct
from mtreclib.recipes.kit.files import OpenFile, Place, RawFile, locate, read_header
from mtreclib.recipes.kit.output import Output
from mtreclib.recipes.kit.reading import read_pieces
from mtreclib.recipes.kit.recipe import Recipe, RecipeConfig
from mtreclib.recipes.kit.registry import find_recipe, recipe_classes, recipe_names, register_recipe, run_recipe
from mtreclib.recipes.kit.report import Report, Tally

__all__ = [
    "OpenFile", "Output", "Place", "RawFile", "Recipe", "RecipeConfig", "Report", "Tally", "binary", "expect", "find_recipe",
    "first", "integers", "locate", "read_header", "read_pieces", "recipe_classes", "recipe_names", "register_recipe", "run_recipe",
    "sort_distinct", "distinct_lines",
]  # fmt: skip
