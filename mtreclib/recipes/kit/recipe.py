"""The recipe base class: what a recipe says about itself, the three parts it writes, and the run the kit does.

A recipe is a small class: its dataset names and download page, its options as a typed settings
class (``Config``: ``mtrec preprocess``'s flags are generated from it), and three methods:
``find`` its raw files (a missing download stops it before anything is written), ``convert``
them into the ``Output`` (streaming, piece by piece) and give its ``specs``. ``run`` does the
rest: the temporary output folder moved into place when complete, the spec files with their
header, the report and its timing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from mtreclib.core.settings import Settings, setting
from mtreclib.data.csvchunks import CHUNK_BYTES
from mtreclib.recipes.kit.files import RawFile
from mtreclib.recipes.kit.output import Output
from mtreclib.recipes.kit.report import Report


@dataclass(frozen=True)
class RecipeConfig(Settings):
    """What every recipe takes; a recipe's ``Config`` derives from it."""

    chunk_bytes: int = setting(CHUNK_BYTES, "bytes of raw text parsed at a time (tests and tuning)", minimum=1, cli=False)


class Recipe:
    """Base of every recipe (see the module docstring); registered with ``register_recipe``.

    Class attributes:
        names: the dataset names it makes (``CensusIncome``; ``AliExpress_NL``, ``AliExpress_ES`` ...).
        page: where the raw files come from (``download_page`` may differ by name).
        title: what the dataset is, with its paper, for the spec's first line.
        labels: the label columns whose rates the report gives.
        Config: its options.
    """

    names: ClassVar[tuple[str, ...]] = ()
    page: ClassVar[str] = ""
    title: ClassVar[str] = ""
    labels: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type[RecipeConfig]] = RecipeConfig

    def __init__(self, name: str, data_dir: Path, config: RecipeConfig, *, progress: bool = True):
        self.name = name
        self.data_dir = Path(data_dir)
        self.config = config
        self.progress = progress
        self.target = self.data_dir / name
        self.report = Report(name, self.target, self.labels)  # the run's, once it starts

    @classmethod
    def download_page(cls, name: str) -> str:
        """Where the download of dataset ``name`` comes from."""
        return cls.page

    def find(self) -> Any:
        """The raw files (any structure ``convert`` and ``specs`` take); ``UserError`` if missing."""
        raise NotImplementedError

    def convert(self, files: Any, output: Output) -> None:
        """Write the rows of ``files`` to ``output``; add the recipe's own counts and notes to ``output.report``."""
        raise NotImplementedError

    def specs(self, files: Any) -> dict[str, tuple[dict, str]]:
        """The spec files to write: file name -> (spec, what its header says after naming the sources).

        Called after ``convert``: ``self.report`` holds what it counted."""
        raise NotImplementedError

    def sources(self, files: Any) -> list[str]:
        """How the spec's header names what was read (default: the name of the ``RawFile``, or of each)."""
        if isinstance(files, RawFile):
            return [files.name]
        return [file.name for file in (files.values() if isinstance(files, dict) else files)]

    def run(self) -> Report:
        """Find, convert, write the specs, move into place; what was done."""
        start = time.perf_counter()
        files = self.find()
        self.report = report = Report(self.name, self.target, self.labels)
        with Output(self.target, report, self.labels) as output:
            self.convert(files, output)
            sources = self.sources(files)
            for file, (spec, notes) in self.specs(files).items():
                output.text(file, self._spec_text(spec, notes, sources))
        report.seconds = time.perf_counter() - start
        return report

    def _spec_text(self, spec: dict, notes: str, sources: list[str]) -> str:
        header = (
            f"# {self.name}: {self.title}, written by `mtrec preprocess --dataset {self.name}` ({type(self).__module__}) from\n"
            + "".join(f"#   {source}\n" for source in sources)
            + "".join(f"# {line}\n" for line in notes.splitlines())
        )
        return header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=120)
