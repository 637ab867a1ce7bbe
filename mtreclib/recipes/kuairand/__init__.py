"""KuaiRand (Pure, 1K, 27K): the recipe (recipe.py), the download's files (files.py), the feature tables
held for the join (tables.py) and the logs streamed into splits (logs.py)."""

from mtreclib.recipes.kuairand.recipe import KuaiRand, read_tables

__all__ = ["KuaiRand", "read_tables"]
