"""Ali-CCP (the ESMM paper's data): the recipe (recipe.py), the feature lists parsed (features.py) and the
common features held for the join (common.py)."""

from mtreclib.recipes.aliccp.recipe import AliCCP

__all__ = ["AliCCP"]
