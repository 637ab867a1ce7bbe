"""The recipes' registry: dataset names to the recipe classes that make them."""

from __future__ import annotations

from pathlib import Path

from mtreclib.core.errors import UserError
from mtreclib.core.settings import flag_name
from mtreclib.recipes.kit.recipe import Recipe
from mtreclib.recipes.kit.report import Report

_RECIPES: list[type[Recipe]] = []


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: ``mtrec preprocess --dataset NAME`` runs ``cls`` for each of its ``names``."""
    for name in cls.names:
        if name in recipe_names():
            raise ValueError(f"recipe {name!r} is registered twice")
    _RECIPES.append(cls)
    return cls


def recipe_classes() -> tuple[type[Recipe], ...]:
    return tuple(_RECIPES)


def recipe_names() -> list[str]:
    return [name for recipe in _RECIPES for name in recipe.names]


def find_recipe(name: str) -> type[Recipe]:
    """The recipe that makes dataset ``name``; an unknown name lists the known ones."""
    for recipe in _RECIPES:
        if name in recipe.names:
            return recipe
    raise UserError(f"no recipe for dataset {name!r}; mtrec preprocess knows: {', '.join(recipe_names())}")


def run_recipe(name: str, data_dir: str | Path, *, progress: bool = True, **options: object) -> Report:
    """Run the recipe of ``name`` on ``data_dir`` with its ``options`` (keys of its ``Config``); what it did."""
    recipe = find_recipe(name)
    for option in options:
        if option not in recipe.Config.keys():
            owners = [r.__name__ for r in _RECIPES if option in r.Config.keys()]
            if not owners:
                raise UserError(f"{flag_name(option)} is no option of any recipe")
            raise UserError(f"{flag_name(option)} is an option of {', '.join(owners)}, not of {name}")
    config = recipe.Config.build(dict(options), what=name)
    return recipe(name, Path(data_dir), config, progress=progress).run()
