"""Until each recipe is a kit class (mtreclib.recipes.kit): a recipe function registered as one.

``register_recipe(names, download, options)`` decorates ``run(data_dir, name, *, progress, **options)
-> list[str]`` as before; it becomes a ``Recipe`` whose ``Config`` has a boolean setting per option.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import make_dataclass

from mtreclib.config.settings import setting
from mtreclib.recipes.kit import Recipe, RecipeConfig, Report
from mtreclib.recipes.kit import register_recipe as register_class


class _Lines(Report):
    """The summary lines a recipe function returned."""

    def __init__(self, lines: list[str]):
        super().__init__("", None)
        self._lines = lines

    def lines(self) -> list[str]:
        return self._lines


def register_recipe(names: tuple[str, ...], download: str, options: tuple[str, ...] = ()) -> Callable[[Callable[..., list[str]]], Callable[..., list[str]]]:
    def decorator(run: Callable[..., list[str]]) -> Callable[..., list[str]]:
        fields = [(option, bool, setting(False, option.replace("_", " "))) for option in options]
        config = make_dataclass(f"{names[0]}Config", fields, bases=(RecipeConfig,), frozen=True)

        def run_recipe(self: Recipe) -> Report:
            return _Lines(run(self.data_dir, self.name, progress=self.progress, **{option: getattr(self.config, option) for option in options}))

        recipe = type(names[0].split("_")[0], (Recipe,), {"names": tuple(names), "page": download, "Config": config, "run": run_recipe})
        register_class(recipe)
        return run

    return decorator
