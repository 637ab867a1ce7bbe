"""Reading a YAML file (config files, dataset specs) with errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtreclib.core.settings import ConfigError


def read_yaml(path: str | Path, what: str = "a config file") -> Any:
    """Parse a YAML file; a missing or broken file is a ``ConfigError`` naming it (and the line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found ({what})") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected {what} (.yaml)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; expected {what} (YAML)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
