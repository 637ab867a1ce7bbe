"""The search space of a study: the ranges the settings declare, narrowed or replaced by a YAML file.

Each setting worth tuning declares its range where it is defined (``setting(..., search=...)``,
see ``mtreclib.core.settings.Search``), so a study of any model with any strategy searches
the training settings, that model's and that strategy's declared ranges, with no code here that
knows them. ``--space FILE`` changes the space:

    # space.yaml: each key a setting of the model, the strategy or the training
    lr: {low: 1.0e-4, high: 3.0e-3, log: true}   # a range (ends included); log: uniform in log scale
    expert_num: {low: 4, high: 8, step: 2}
    bottom_dims: [[256, 128], [512, 256]]          # a list: the values to choose from
    tower_dims: null                               # not searched: keeps its configured value
    replace: true                                  # search only the keys above (default: the
                                                   # other declared ranges are searched too)

A setting given on the command line or in ``--config`` keeps that value (it is not searched)
unless the space file names it. Every range and choice is checked against the setting's own bounds, and the space's extreme
values against the checks that involve several settings (DSelect-k's ``selected_experts`` at
most ``expert_num``), before any trial runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from mtreclib.config.experiment import ExperimentConfig
from mtreclib.config.files import read_yaml
from mtreclib.config.resolve import normalise
from mtreclib.core.settings import (
    ConfigError,
    Search,
    Settings,
    _optional,
    checked,
    describe_type,
    fields_of,
    flag_name,
    meta_of,
)

# Training settings that are never searched: the seed (a study compares settings, not seeds),
# the threads and memory release (speed only), the strategy (each study tunes one; its settings are the space).
NOT_SEARCHED = ("seed", "threads", "release_memory", "mto")
# The most combinations of extreme values checked together; past it each setting's alone.
COMBINATIONS_CHECKED = 20_000
DECLARED = "the declared search space"
_RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class Dimension:
    """One searched setting.

    Attributes:
        key: the setting's flat key (the parameter's name in the study).
        search: where it is searched.
        section: ``train``, ``model`` or ``strategy``: the settings class it belongs to.
        field, tp: the setting's dataclass field and type.
    """

    key: str
    search: Search
    section: str
    field: dataclasses.Field
    tp: Any

    @property
    def is_int(self) -> bool:
        return _inner(self.tp) is int

    def distribution(self, optuna: Any) -> Any:
        """The Optuna distribution this dimension is sampled from."""
        d = optuna.distributions
        search = self.search
        if search.choices is not None:
            return d.CategoricalDistribution([encode(choice) for choice in search.choices])
        if self.is_int:
            return d.IntDistribution(int(search.low), int(search.high), log=search.log, step=int(search.step or 1))
        return d.FloatDistribution(float(search.low), float(search.high), log=search.log, step=search.step)

    def decode(self, raw: Any) -> Any:
        """A sampled (or stored) parameter as the setting's typed value."""
        return checked(raw, self.field, self.tp, self.key)


def encode(value: Any) -> Any:
    """A choice as Optuna stores it: tuples as ``"512,256"`` (what the setting reads back), others as they are."""
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else value


def _inner(tp: Any) -> Any:
    return _optional(tp)[0]


def _sections(config: ExperimentConfig) -> tuple[tuple[str, Settings], ...]:
    return (("train", config.train), ("model", config.model_config), ("strategy", config.mto_config))


def searchable(config: ExperimentConfig) -> dict[str, tuple[str, dataclasses.Field, Any]]:
    """Every setting a study of ``config``'s model and strategy may search: key -> (section, field, type)."""
    found = {}
    for section, settings in _sections(config):
        for field, tp in fields_of(type(settings)):
            if not (section == "train" and field.name in NOT_SEARCHED):
                found[field.name] = (section, field, tp)
    return found


def check_search(search: Search, field: dataclasses.Field, tp: Any, where: str) -> None:
    """A ``ConfigError`` naming ``where`` unless every value ``search`` can give is valid for the setting."""
    if search.choices is not None:
        if not search.choices:
            raise ConfigError(f"{where}: an empty list of choices")
        for choice in search.choices:
            checked(choice, field, tp, where)
        return
    inner = _inner(tp)
    if inner not in (int, float):
        raise ConfigError(f"{where}: a range needs a number setting, and this one is {describe_type(tp)}; give a list of choices")
    for name in ("low", "high"):
        value = getattr(search, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: the range's {name} must be a number, got {value!r}")
        if inner is int and not float(value).is_integer():
            raise ConfigError(f"{where}: the setting takes integers, so the range's {name} must be one, got {value}")
    if not search.low < search.high:
        raise ConfigError(f"{where}: the range's low must be below its high, got {search.low}..{search.high}")
    if search.log and search.low <= 0:
        raise ConfigError(f"{where}: a log-scale range must start above 0, got low {search.low}")
    if search.step is not None:
        if search.log:
            raise ConfigError(f"{where}: a range takes log or step, not both")
        if isinstance(search.step, bool) or not isinstance(search.step, (int, float)) or search.step <= 0:
            raise ConfigError(f"{where}: the range's step must be a number above 0, got {search.step!r}")
        if inner is int and not float(search.step).is_integer():
            raise ConfigError(f"{where}: the setting takes integers, so the range's step must be one, got {search.step}")
        spans = (search.high - search.low) / search.step
        if abs(spans - round(spans)) > 1e-9:
            raise ConfigError(f"{where}: the range {search.low}..{search.high} is not a whole number of steps of {search.step}")
    checked(search.low, field, tp, where)
    checked(search.high, field, tp, where)


class SearchSpace:
    """The settings a study searches, in a fixed order (the order they are sampled in)."""

    def __init__(self, dimensions: dict[str, Dimension], source: str = DECLARED):
        self.dimensions = dimensions
        self.source = source

    @classmethod
    def of(cls, config: ExperimentConfig, searches: dict[str, Search], source: str = DECLARED) -> SearchSpace:
        """The space of ``searches`` (key -> ``Search``) over ``config``'s settings, each checked against its setting."""
        known = searchable(config)
        dimensions = {}
        for key, search in searches.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown setting {key!r} for {_what(config)}; known: {', '.join(sorted(known))}")
            section, field, tp = known[key]
            name = f"{key} ({flag_name(key, field)})"
            check_search(search, field, tp, f"{name} search range" if source == DECLARED else f"{source}: {name}")
            dimensions[key] = Dimension(key, search, section, field, tp)
        return cls(dimensions, source)

    @classmethod
    def declared(cls, config: ExperimentConfig) -> SearchSpace:
        """The ranges that ``config``'s training, model and strategy settings declare."""
        searches = {key: meta_of(field).search for key, (_, field, _) in searchable(config).items() if meta_of(field).search is not None}
        return cls.of(config, searches)

    @classmethod
    def build(cls, config: ExperimentConfig, path: str | None = None, *, fixed: Collection[str] = ()) -> SearchSpace:
        """The declared space less the ``fixed`` settings (those the user gave), changed by the YAML file
        ``path`` when given (which may search a fixed one again); checked, extremes included."""
        searches = {key: d.search for key, d in cls.declared(config).dimensions.items() if key not in set(fixed)}
        source = DECLARED
        if path is not None:
            changes, replace = read_space_file(path, config)
            searches = {} if replace else searches
            for key, search in changes.items():
                searches.pop(key, None)
                if search is not None:
                    searches[key] = search
            source = str(path)
        space = cls.of(config, searches, source)
        if not space.dimensions:
            raise ConfigError(f"{source}: nothing to search for {_what(config)}")
        space.check_combinations(config)
        return space

    @property
    def searches(self) -> dict[str, Search]:
        """The space as plain, picklable data (a worker process rebuilds it with ``of``)."""
        return {key: dimension.search for key, dimension in self.dimensions.items()}

    def sample(self, trial: Any) -> dict[str, Any]:
        """One point of the space from an Optuna trial: setting key -> typed value."""
        values = {}
        for key, dimension in self.dimensions.items():
            search = dimension.search
            if search.choices is not None:
                raw = trial.suggest_categorical(key, [encode(choice) for choice in search.choices])
            elif dimension.is_int:
                raw = trial.suggest_int(key, int(search.low), int(search.high), step=int(search.step or 1), log=search.log)
            else:
                raw = trial.suggest_float(key, float(search.low), float(search.high), step=search.step, log=search.log)
            values[key] = dimension.decode(raw)
        return values

    def check_combinations(self, config: ExperimentConfig) -> None:
        """Every combination of the space's extreme values (a range's ends, every choice) with the fixed
        settings passes the checks of its settings class; a ``ConfigError`` with the first that does not."""
        for section, settings in _sections(config):
            dimensions = [d for d in self.dimensions.values() if d.section == section]
            for combination in _extremes(dimensions):
                try:
                    type(settings)(**{**vars(settings), **combination})
                except ConfigError as error:
                    point = ", ".join(f"{key}={encode(value)}" for key, value in combination.items())
                    raise ConfigError(f"{self.source}: the search space reaches settings that cannot go together ({point}): {error}") from None

    def describe(self) -> list[str]:
        """One line per dimension: ``lr: 0.0001..0.01 (log)``."""
        return [f"{key}: {dimension.search.describe()}" for key, dimension in self.dimensions.items()]


def _extremes(dimensions: list[Dimension]) -> Iterator[dict[str, Any]]:
    """Every combination of the dimensions' extreme values, or (too many) each dimension's alone."""
    values = [[d.decode(v) for v in d.search.values] for d in dimensions]
    if math.prod(len(v) for v in values) <= COMBINATIONS_CHECKED:
        for combination in itertools.product(*values):
            yield {d.key: value for d, value in zip(dimensions, combination)}
        return
    for d, options in zip(dimensions, values):
        for value in options:
            yield {d.key: value}


def _what(config: ExperimentConfig) -> str:
    return f"model {config.model} with strategy {config.train.mto}"


def read_space_file(path: str, config: ExperimentConfig) -> tuple[dict[str, Search | None], bool]:
    """A space file's entries (None: not searched) and whether it replaces the declared space."""
    data = read_yaml(path, "a search space")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected 'setting: range' lines, got {type(data).__name__}")
    known = searchable(config)
    replace = False
    entries: dict[str, Search | None] = {}
    for raw_key, value in data.items():
        key = normalise(str(raw_key))
        if key == "replace":
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: replace must be true or false, got {value!r}")
            replace = value
            continue
        if key not in known:
            raise ConfigError(f"{path}: unknown setting {raw_key!r} for {_what(config)}; known: replace, {', '.join(sorted(known))}")
        entries[key] = _entry(value, f"{path}: {key}")
    return entries, replace


def _entry(value: Any, where: str) -> Search | None:
    if value is None:
        return None
    if isinstance(value, list):
        return Search(choices=tuple(tuple(item) if isinstance(item, list) else item for item in value))
    if isinstance(value, dict):
        unknown = [key for key in value if key not in _RANGE_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} in a range; a range takes {', '.join(_RANGE_KEYS)}")
        missing = [key for key in ("low", "high") if key not in value]
        if missing:
            raise ConfigError(f"{where}: a range needs low and high, {missing[0]} is missing")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{where}: log must be true or false, got {log!r}")
        return Search(low=_number(value["low"]), high=_number(value["high"]), log=log, step=_number(value.get("step")))
    raise ConfigError(f"{where}: expected a range {{low: .., high: ..}}, a list of choices, or null (not searched); got {value!r}")


def _number(value: Any) -> Any:
    """YAML reads ``1e-4`` (no point) as text: such text as a number; anything else as it is (checked later)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
