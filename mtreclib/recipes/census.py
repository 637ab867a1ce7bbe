"""UCI Census-Income (KDD), the MMoE paper's public benchmark: the raw download to Parquet splits and a spec.

Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts",
KDD 2018, section 6.3 (https://doi.org/10.1145/3219819.3220007). Raw files: ``census-income.data``
(199,523 lines) and ``census-income.test`` (99,762 lines), packed or not (below). A line holds 42 comma-separated values (a space after each comma), in the order
of UCI's ``census-income.names``: 24 attributes, the instance weight (value 25), 16 attributes
and the income label (``- 50000.`` or ``50000+.``). Nominal values are text, ``?`` marks a
missing one and ``Not in universe`` is a value like any other.

What is written (``DIR/CensusIncome/``):

- labels (int8 0/1), as in the paper: ``income`` (the label is ``50000+.``), ``never_married``
  (marital status is ``Never married``) and ``education`` (education is a college degree:
  ``COLLEGE_DEGREES``, bachelor's or higher, as AmazaspShumik/mtlearn's reproduction of the paper
  does). The spec's default ``tasks`` are the paper's first group, ``[income, never_married]``;
  ``--tasks education,never_married`` trains the second;
- features: the other 38 attributes. Education, marital status and income are left out altogether,
  as the paper ("we remove education and marital status from input features") and mtlearn's
  reproduction do, so that no task of either group sees a label as an input (other reproductions
  keep education, or income, as a feature of the group that does not predict it). The 7
  continuous attributes of ``census-income.names`` are ``NUMERICAL`` (float64, as written); the 31
  nominal ones are ``CATEGORICAL``: strings as written less the surrounding spaces, ``?`` as null;
- ``instance_weight`` (float64): UCI's sampling weight, not a feature; the spec names it
  ``sample_weight`` (training ignores it unless asked with ``--sample-weights``);
- splits: ``census-income.data`` is ``train``; ``census-income.test`` is halved into ``valid`` and
  ``test`` as the paper does, by row: row ``r`` (0-based, in file order) is a validation row when
  the ``r``-th output of SplitMix64 seeded with ``SPLIT_SEED`` is below 2^63. That is about half
  (not exactly), and the same whatever the reading's chunking. Rows keep the files' order.

The download: UCI serves ``census+income+kdd.zip``, which holds ``census.tar.gz``, which holds
the two files; UCI's former directory (``census-income-mld/``) also served each one gzipped
(``census-income.data.gz``). Each file is read from the least packed form found, in ``DIR`` then
``DIR/CensusIncome/``: the text, its ``.gz``, ``census.tar.gz``, ``census+income+kdd.zip``.

Memory: the files go through in pieces of ``CHUNK_BYTES`` of text, each written out as Parquet
row groups, so memory does not grow with the number of rows.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtreclib.core.errors import DataError
from mtreclib.data.csvchunks import Dialect
from mtreclib.data.encoding import splitmix64
from mtreclib.recipes.kit import Output, Place, RawFile, Recipe, expect, first, locate, read_pieces, register_recipe

DOWNLOAD_PAGE = "https://archive.ics.uci.edu/dataset/117/census+income+kdd"
ZIP_NAME = "census+income+kdd.zip"
TAR_NAME = "census.tar.gz"
TRAIN_FILE = "census-income.data"
TEST_FILE = "census-income.test"

# The 42 values of a line, named after census-income.names's attribute list (#0 .. #39).
COLUMNS = (
    "age", "class_of_worker", "detailed_industry_recode", "detailed_occupation_recode", "education",
    "wage_per_hour", "enroll_in_edu_inst_last_wk", "marital_stat", "major_industry_code",
    "major_occupation_code", "race", "hispanic_origin", "sex", "member_of_a_labor_union",
    "reason_for_unemployment", "full_or_part_time_employment_stat", "capital_gains", "capital_losses",
    "dividends_from_stocks", "tax_filer_stat", "region_of_previous_residence", "state_of_previous_residence",
    "detailed_household_and_family_stat", "detailed_household_summary_in_household", "instance_weight",
    "migration_code_change_in_msa", "migration_code_change_in_reg", "migration_code_move_within_reg",
    "live_in_this_house_1_year_ago", "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer",
    "family_members_under_18", "country_of_birth_father", "country_of_birth_mother", "country_of_birth_self",
    "citizenship", "own_business_or_self_employed", "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits", "weeks_worked_in_year", "year", "income",
)  # fmt: skip
WEIGHT = "instance_weight"
NUMERICAL = (
    "age", "wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks",
    "num_persons_worked_for_employer", "weeks_worked_in_year",
)  # fmt: skip
LABEL_SOURCES = ("education", "marital_stat", "income")
CATEGORICAL = tuple(c for c in COLUMNS if c not in (*NUMERICAL, *LABEL_SOURCES, WEIGHT))

INCOME_VALUES = ("- 50000.", "50000+.")
MARITAL_VALUES = (
    "Never married", "Married-civilian spouse present", "Married-spouse absent", "Separated", "Divorced",
    "Widowed", "Married-A F spouse present",
)  # fmt: skip
EDUCATION_VALUES = (
    "Children", "Less than 1st grade", "1st 2nd 3rd or 4th grade", "5th or 6th grade", "7th and 8th grade",
    "9th grade", "10th grade", "11th grade", "12th grade no diploma", "High school graduate",
    "Some college but no degree", "Associates degree-occup /vocational", "Associates degree-academic program",
    "Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)",
    "Prof school degree (MD DDS DVM LLB JD)", "Doctorate degree(PhD EdD)",
)  # fmt: skip
# "At least college" (the paper's second group): a bachelor's degree or higher. Public
# reproductions differ; morningsky/multi_task_learning also counts "Some college but no degree"
# (but not the associate degrees). See docs/recipes/census.md.
COLLEGE_DEGREES = (
    "Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)",
    "Prof school degree (MD DDS DVM LLB JD)", "Doctorate degree(PhD EdD)",
)  # fmt: skip
TASKS = ("income", "never_married", "education")
DEFAULT_TASKS = ("income", "never_married")
SPLIT_SEED = 2018
EXPECTED_LINES = {TRAIN_FILE: 199_523, TEST_FILE: 99_762}  # census-income.names
SPLITS = ("train", "valid", "test")

_READ_TYPES = {name: pa.float64() if name in (*NUMERICAL, WEIGHT) else pa.string() for name in COLUMNS}
SCHEMA = pa.schema(
    [pa.field(name, pa.float64(), nullable=False) for name in NUMERICAL]
    + [pa.field(name, pa.string()) for name in CATEGORICAL]
    + [pa.field(WEIGHT, pa.float64(), nullable=False)]
    + [pa.field(task, pa.int8(), nullable=False) for task in TASKS]
)
_DIALECT = Dialect(delimiter=",", quoted=False)  # no quoting: UCI turned every comma inside a value into a space
_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def in_validation(rows: np.ndarray, seed: int = SPLIT_SEED) -> np.ndarray:
    """(n,) bool: which 0-based rows of ``census-income.test`` go to ``valid`` (the rest to ``test``).

    Row ``r`` takes SplitMix64's ``r``-th output for ``seed`` (state ``seed + (r + 1) * gamma``;
    ``splitmix64`` adds the last gamma), so the choice depends on the row alone, not on how the
    file was cut into pieces.
    """
    with np.errstate(over="ignore"):
        state = np.uint64(seed) + rows.astype(np.uint64) * _GAMMA  # wraps mod 2^64
    return splitmix64(state) < np.uint64(1 << 63)


def _stripped(path: str, table: pa.Table, name: str, first_line: int) -> pa.ChunkedArray:
    """Nominal column ``name`` without surrounding spaces; an empty value is an error (``?`` marks an unknown one)."""
    values = pc.utf8_trim_whitespace(table.column(name))
    empty = pc.equal(values, "").to_numpy(zero_copy_only=False)
    if empty.any():
        raise DataError(path, "missing value; expected a value (? for unknown)", line=first_line + first(empty), column=name)
    return values


def _label(
    path: str, values: pa.ChunkedArray, name: str, allowed: Sequence[str], positive: Sequence[str], what: str, first_line: int
) -> pa.Array:
    """(n,) int8: 1 where ``values`` is in ``positive``; a value outside ``allowed`` is an error."""
    known = pc.is_in(values, value_set=pa.array(allowed)).to_numpy(zero_copy_only=False)
    expect(~known, values, path, first_line, name, what)
    return pa.array(pc.is_in(values, value_set=pa.array(positive)).to_numpy(zero_copy_only=False).astype(np.int8))


def convert_rows(path: str, raw: pa.Table, first: int) -> pa.Table:
    """Parsed raw lines (``COLUMNS``, the first on line ``first``) as rows of ``SCHEMA``; ``DataError`` at the first bad value."""
    for name in (*NUMERICAL, WEIGHT):
        values = raw.column(name).to_numpy()
        bad = ~np.isfinite(values) | ((values < 0) if name == WEIGHT else False)
        expect(bad, values, path, first, name, "a finite weight >= 0" if name == WEIGHT else "a finite number")
    arrays = [raw.column(name) for name in NUMERICAL]
    for name in CATEGORICAL:
        values = _stripped(path, raw, name, first)
        arrays.append(pc.if_else(pc.equal(values, "?"), pa.scalar(None, pa.string()), values))
    arrays.append(raw.column(WEIGHT))
    # A label source's empty value is reported by _label as a value outside the allowed ones.
    income, marital, education = (pc.utf8_trim_whitespace(raw.column(name)) for name in ("income", "marital_stat", "education"))
    arrays.append(_label(path, income, "income", INCOME_VALUES, ("50000+.",), "'- 50000.' or '50000+.'", first))
    what = "one of the 7 marital statuses of census-income.names"
    arrays.append(_label(path, marital, "marital_stat", MARITAL_VALUES, ("Never married",), what, first))
    what = "one of the 17 education levels of census-income.names"
    arrays.append(_label(path, education, "education", EDUCATION_VALUES, COLLEGE_DEGREES, what, first))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


class _FinalBlankLinesDropped:
    """A byte stream without the blank lines at its very end.

    A final empty line is no row (pandas, which the public reproductions read these files with,
    skips it); an empty line with rows after it is still an error. Whitespace at the end of what
    was read so far is held back until a later read shows more text after it.
    """

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self._held = b""
        self._text_seen = False
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._done:
            data = self._stream.read(size)
            if not data:
                self._done = True
                # The last line keeps its line break (if the file had one), nothing after it.
                return b"\n" if self._text_seen and b"\n" in self._held else b""
            data = self._held + data
            text = data.rstrip(b" \t\r\n")
            self._held = data[len(text) :]
            if text:
                self._text_seen = True
                return text
        return b""


@register_recipe
class CensusIncome(Recipe):
    """UCI Census-Income (KDD) with the MMoE paper's tasks (see the module docstring)."""

    names = ("CensusIncome",)
    page = DOWNLOAD_PAGE
    title = "UCI Census-Income (KDD), tasks as in the MMoE paper (KDD 2018); docs/recipes/census.md"
    labels = TASKS

    def find(self) -> dict[str, RawFile]:
        """``census-income.data`` and ``census-income.test`` by split (train, test), each in its least packed form."""
        folders = [self.data_dir, self.data_dir / self.name]
        found = {}
        for split, file_name in (("train", TRAIN_FILE), ("test", TEST_FILE)):
            chains = {file_name: ((),), f"{file_name}.gz": ((),), TAR_NAME: ((file_name,),), ZIP_NAME: ((file_name,), (f"{file_name}.gz",), (TAR_NAME, file_name))}
            places = [Place(folder / name, chain) for name, chain in chains.items() for folder in folders]
            missing = f"download {ZIP_NAME} from {DOWNLOAD_PAGE} into {self.data_dir}/ (see docs/recipes/census.md)"
            found[split] = locate(file_name, places, missing=missing, hint=f"is the download complete? Download it again from {DOWNLOAD_PAGE}")
        return found

    def convert(self, files: dict[str, RawFile], output: Output) -> None:
        """``census-income.data`` to ``train``; ``census-income.test`` halved into ``valid`` and ``test`` by ``in_validation``."""
        for split in SPLITS:
            output.parquet(split, SCHEMA, gather=False)
        report = output.report
        for split, file_name in (("train", TRAIN_FILE), ("test", TEST_FILE)):
            rows = 0
            with files[split].open() as file:
                file = dataclasses.replace(file, stream=_FinalBlankLinesDropped(file.stream))
                pieces = read_pieces(file, COLUMNS, _READ_TYPES, report=report, chunk_bytes=self.config.chunk_bytes, progress=self.progress, dialect=_DIALECT)
                for piece, raw in pieces:
                    table = convert_rows(file.name, raw, piece.first_line)
                    del raw  # the parsed text goes before the next piece is parsed
                    if split == "train":
                        output.write("train", table)
                    else:
                        valid = in_validation(np.arange(rows, rows + table.num_rows))
                        output.write("valid", table.filter(pa.array(valid)))
                        output.write("test", table.filter(pa.array(~valid)))
                    rows += table.num_rows
            if rows != EXPECTED_LINES[file_name]:
                report.notes.append(f"note: {file_name} has {rows:,} lines; census-income.names gives {EXPECTED_LINES[file_name]:,}")
        report.notes.append(f"the paper's second task group: mtrec train --dataset {self.name} --tasks education,never_married")

    def specs(self, files: dict[str, RawFile]) -> dict[str, tuple[dict, str]]:
        return {"dataset.yaml": (spec(self.name), "Default tasks: the paper's first group; --tasks education,never_married trains the second.")}

    def sources(self, files: dict[str, RawFile]) -> list[str]:
        return [files[split].name for split in ("train", "test")]


def spec(name: str) -> dict:
    """The dataset spec (docs/dataset-spec.md) of the written folder."""
    return {
        "name": name,
        "format": "parquet",
        "train": "train.parquet",
        "valid": "valid.parquet",
        "test": "test.parquet",
        # Every attribute describes the person, the "user" of a row: PEPNet's personal gates read them.
        "categorical": [{"name": column, "role": "user"} for column in CATEGORICAL],
        # min-max scaling (fitted on train) is what the public MMoE reproductions feed their models
        "numerical": [{"name": column, "transform": "minmax"} for column in NUMERICAL],
        "labels": list(TASKS),
        "tasks": list(DEFAULT_TASKS),
        "sample_weight": WEIGHT,
    }
