"""The recipes' registry: dataset names to the functions that make them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtreclib.core.errors import UserError


@dataclass(frozen=True)
class Recipe:
    """A registered recipe.

    Attributes:
        names: the dataset names it makes (``CensusIncome``; ``AliExpress_NL``, ``AliExpress_ES`` ...).
        download: where the raw files come from (a URL), for messages and ``mtrec preprocess --help``.
        run: ``run(data_dir, name, progress=..., **options)`` converts the download and returns
            lines that summarise what it wrote (rows per split, label rates, seconds).
        options: the keyword options ``run`` takes besides ``progress`` (``drop_orphans``).
    """

    names: tuple[str, ...]
    download: str
    run: Callable[..., list[str]]
    options: tuple[str, ...] = ()


_RECIPES: list[Recipe] = []


def register_recipe(
    names: tuple[str, ...], download: str, options: tuple[str, ...] = ()
) -> Callable[[Callable[..., list[str]]], Callable[..., list[str]]]:
    """Function decorator: ``run(data_dir: Path, name: str, *, progress: bool, **options) -> list[str]``."""

    def decorator(run: Callable[..., list[str]]) -> Callable[..., list[str]]:
        for name in names:
            if any(name in recipe.names for recipe in _RECIPES):
                raise ValueError(f"recipe {name!r} is registered twice")
        _RECIPES.append(Recipe(tuple(names), download, run, tuple(options)))
        return run

    return decorator


def recipe_names() -> list[str]:
    return [name for recipe in _RECIPES for name in recipe.names]


def find_recipe(name: str) -> Recipe:
    """The recipe that makes dataset ``name``; an unknown name lists the known ones."""
    for recipe in _RECIPES:
        if name in recipe.names:
            return recipe
    raise UserError(f"no recipe for dataset {name!r}; mtrec preprocess knows: {', '.join(recipe_names())}")


def run_recipe(name: str, data_dir: str | Path, *, progress: bool = True, **options: object) -> list[str]:
    """Run the recipe of ``name`` on ``data_dir`` with its ``options`` set; returns its summary lines."""
    recipe = find_recipe(name)
    for option in options:
        if option not in recipe.options:
            flag = "--" + option.replace("_", "-")
            raise UserError(f"{flag} is an option of {', '.join(r.names[0].split('_')[0] for r in _RECIPES if option in r.options)}, not of {name}")
    return recipe.run(Path(data_dir), name, progress=progress, **options)
