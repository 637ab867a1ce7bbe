"""Recipes: a public dataset's raw download, exactly as its publisher serves it, to a dataset folder.

``mtrec preprocess --dataset NAME --data-dir DIR`` finds the recipe registered for ``NAME`` and
runs it. A recipe reads the download from ``DIR`` or ``DIR/NAME/`` (packed or unpacked),
streaming in bounded memory, and writes ``DIR/NAME/``: the splits as Parquet files and a
``dataset.yaml`` (docs/dataset-spec.md) that ``mtrec train --dataset NAME`` reads. Bad input
stops it with one ``DataError`` line naming the file, line and column, and leaves no output:
everything is written under a temporary name and renamed when complete.

Each recipe is one module that registers itself with ``register_recipe``; importing this
package registers them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtreclib.errors import UserError


@dataclass(frozen=True)
class Recipe:
    """A registered recipe.

    Attributes:
        names: the dataset names it makes (``CensusIncome``; ``AliExpress_NL``, ``AliExpress_ES`` ...).
        download: where the raw files come from (a URL), for messages and ``mtrec preprocess --help``.
        run: ``run(data_dir, name, progress=...)`` converts the download and returns lines that
            summarise what it wrote (rows per split, label rates, seconds).
    """

    names: tuple[str, ...]
    download: str
    run: Callable[..., list[str]]


_RECIPES: list[Recipe] = []


def register_recipe(names: tuple[str, ...], download: str) -> Callable[[Callable[..., list[str]]], Callable[..., list[str]]]:
    """Function decorator: ``run(data_dir: Path, name: str, *, progress: bool) -> list[str]``."""

    def decorator(run: Callable[..., list[str]]) -> Callable[..., list[str]]:
        for name in names:
            if any(name in recipe.names for recipe in _RECIPES):
                raise ValueError(f"recipe {name!r} is registered twice")
        _RECIPES.append(Recipe(tuple(names), download, run))
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


def run_recipe(name: str, data_dir: str | Path, *, progress: bool = True) -> list[str]:
    """Run the recipe of ``name`` on ``data_dir``; returns its summary lines."""
    return find_recipe(name).run(Path(data_dir), name, progress=progress)
