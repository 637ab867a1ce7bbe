"""Files in the layout of the UCI Census-Income (KDD) download, for tests and benchmarks.

The values are random draws from the value lists of UCI's ``census-income.names``, not a model of
the real data; what matches the download is the layout, as the real lines show it:

    38, Private, 6, 36, 1st 2nd 3rd or 4th grade, 0, Not in universe, ..., 1032.38, ?, ?, ?, ...,
    Foreign born- Not a citizen of U S , 0, Not in universe, 2, 12, 95, - 50000.

42 values a line joined by ``", "`` (so every value but the first starts with a space), no
header, ``\\n`` line ends; the instance weight 25th, with two or three decimals; ``?`` for missing
values in the columns that have them in the real files; values with a trailing space where
``census-income.names`` has one (``Foreign born- Not a citizen of U S ``); the label ``- 50000.``
or ``50000+.`` last. Packed as UCI serves it: ``census+income+kdd.zip`` holding ``census.tar.gz``
holding ``census-income.data`` and ``census-income.test``; or the older per-file
``census-income.data.gz``/``census-income.test.gz``; or the text files.
"""

from __future__ import annotations

import gzip
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_FILE, TEST_FILE = "census-income.data", "census-income.test"
FILES = (TRAIN_FILE, TEST_FILE)
LAYOUTS = ("zip", "tar", "gz", "text")

# census-income.names, attribute by attribute in line order; None for a continuous attribute.
# (The instance weight, "ignore"d by the .names file, sits between #23 and #24.)
ATTRIBUTES: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("age", None),
    ("class of worker", ("Not in universe", "Federal government", "Local government", "Never worked", "Private",
                         "Self-employed-incorporated", "Self-employed-not incorporated", "State government", "Without pay")),
    ("detailed industry recode", tuple(str(i) for i in range(52))),
    ("detailed occupation recode", tuple(str(i) for i in range(47))),
    ("education", ("Children", "7th and 8th grade", "9th grade", "10th grade", "High school graduate", "11th grade",
                   "12th grade no diploma", "5th or 6th grade", "Less than 1st grade", "Bachelors degree(BA AB BS)",
                   "1st 2nd 3rd or 4th grade", "Some college but no degree", "Masters degree(MA MS MEng MEd MSW MBA)",
                   "Associates degree-occup /vocational", "Associates degree-academic program", "Doctorate degree(PhD EdD)",
                   "Prof school degree (MD DDS DVM LLB JD)")),
    ("wage per hour", None),
    ("enroll in edu inst last wk", ("Not in universe", "High school", "College or university")),
    ("marital stat", ("Never married", "Married-civilian spouse present", "Married-spouse absent", "Separated", "Divorced",
                      "Widowed", "Married-A F spouse present")),
    ("major industry code", ("Not in universe or children", "Entertainment", "Social services", "Agriculture", "Education",
                             "Public administration", "Manufacturing-durable goods", "Manufacturing-nondurable goods",
                             "Wholesale trade", "Retail trade", "Finance insurance and real estate", "Private household services",
                             "Business and repair services", "Personal services except private HH", "Construction",
                             "Medical except hospital", "Other professional services", "Transportation",
                             "Utilities and sanitary services", "Mining", "Communications", "Hospital services",
                             "Forestry and fisheries", "Armed Forces")),
    ("major occupation code", ("Not in universe", "Professional specialty", "Other service", "Farming forestry and fishing",
                               "Sales", "Adm support including clerical", "Protective services", "Handlers equip cleaners etc ",
                               "Precision production craft & repair", "Technicians and related support",
                               "Machine operators assmblrs & inspctrs", "Transportation and material moving",
                               "Executive admin and managerial", "Private household services", "Armed Forces")),
    ("race", ("White", "Black", "Other", "Amer Indian Aleut or Eskimo", "Asian or Pacific Islander")),
    ("hispanic origin", ("Mexican (Mexicano)", "Mexican-American", "Puerto Rican", "Central or South American", "All other",
                         "Other Spanish", "Chicano", "Cuban", "Do not know", "NA")),
    ("sex", ("Female", "Male")),
    ("member of a labor union", ("Not in universe", "No", "Yes")),
    ("reason for unemployment", ("Not in universe", "Re-entrant", "Job loser - on layoff", "New entrant", "Job leaver",
                                 "Other job loser")),
    ("full or part time employment stat", ("Children or Armed Forces", "Full-time schedules", "Unemployed part- time",
                                           "Not in labor force", "Unemployed full-time", "PT for non-econ reasons usually FT",
                                           "PT for econ reasons usually PT", "PT for econ reasons usually FT")),
    ("capital gains", None),
    ("capital losses", None),
    ("dividends from stocks", None),
    ("tax filer stat", ("Nonfiler", "Joint one under 65 & one 65+", "Joint both under 65", "Single", "Head of household",
                        "Joint both 65+")),
    ("region of previous residence", ("Not in universe", "South", "Northeast", "West", "Midwest", "Abroad")),
    ("state of previous residence", ("Not in universe", "Utah", "Michigan", "North Carolina", "North Dakota", "Virginia",
                                     "Vermont", "Wyoming", "West Virginia", "Pennsylvania", "Abroad", "Oregon", "California",
                                     "Iowa", "Florida", "Arkansas", "Texas", "New York", "Georgia")),
    ("detailed household and family stat", ("Child <18 never marr not in subfamily", "Secondary individual",
                                            "In group quarters", "Spouse of householder", "Householder",
                                            "Nonfamily householder", "Child 18+ never marr Not in a subfamily",
                                            "Grandchild <18 never marr child of subfamily RP",
                                            "Other Rel 18+ ever marr not in subfamily")),
    ("detailed household summary in household", ("Child under 18 never married", "Other relative of householder",
                                                 "Nonrelative of householder", "Spouse of householder", "Householder",
                                                 "Child under 18 ever married", "Group Quarters- Secondary individual",
                                                 "Child 18 or older")),
    ("instance weight", None),
    ("migration code-change in msa", ("Not in universe", "Nonmover", "MSA to MSA", "NonMSA to nonMSA", "MSA to nonMSA",
                                      "NonMSA to MSA", "Abroad to MSA", "Not identifiable", "Abroad to nonMSA")),
    ("migration code-change in reg", ("Not in universe", "Nonmover", "Same county", "Different county same state",
                                      "Different state same division", "Abroad", "Different region",
                                      "Different division same region")),
    ("migration code-move within reg", ("Not in universe", "Nonmover", "Same county", "Different county same state",
                                        "Different state in West", "Abroad", "Different state in Midwest",
                                        "Different state in South", "Different state in Northeast")),
    ("live in this house 1 year ago", ("Not in universe under 1 year old", "Yes", "No")),
    ("migration prev res in sunbelt", ("Not in universe", "Yes", "No")),
    ("num persons worked for employer", None),
    ("family members under 18", ("Both parents present", "Neither parent present", "Mother only present",
                                 "Father only present", "Not in universe")),
    ("country of birth father", ("Mexico", "United-States", "Puerto-Rico", "Dominican-Republic", "Jamaica", "Cuba",
                                 "Outlying-U S (Guam USVI etc)", "Holand-Netherlands", "Trinadad&Tobago", "Hong Kong")),
    ("country of birth mother", ("India", "Mexico", "United-States", "Puerto-Rico", "England", "Honduras", "Peru",
                                 "Outlying-U S (Guam USVI etc)", "South Korea", "Panama")),
    ("country of birth self", ("United-States", "Mexico", "Puerto-Rico", "Peru", "Canada", "South Korea", "India",
                               "Japan", "Haiti", "El-Salvador")),
    ("citizenship", ("Native- Born in the United States", "Foreign born- Not a citizen of U S ",
                     "Native- Born in Puerto Rico or U S Outlying", "Native- Born abroad of American Parent(s)",
                     "Foreign born- U S citizen by naturalization")),
    ("own business or self employed", ("0", "2", "1")),
    ("fill inc questionnaire for veteran's admin", ("Not in universe", "Yes", "No")),
    ("veterans benefits", ("0", "2", "1")),
    ("weeks worked in year", None),
    ("year", ("94", "95")),
    ("income", ("- 50000.", "50000+.")),
)  # fmt: skip

# Columns with '?' (unknown) in the real files.
MISSING = (
    "hispanic origin", "state of previous residence", "migration code-change in msa", "migration code-change in reg",
    "migration code-move within reg", "migration prev res in sunbelt", "country of birth father",
    "country of birth mother", "country of birth self",
)  # fmt: skip
# Continuous attributes: (largest value, share of zeros); integers, as in the real files.
_CONTINUOUS = {
    "age": (90, 0.02),
    "wage per hour": (9999, 0.9),
    "capital gains": (99999, 0.95),
    "capital losses": (4608, 0.97),
    "dividends from stocks": (99999, 0.9),
    "num persons worked for employer": (6, 0.45),
    "weeks worked in year": (52, 0.45),
}


@dataclass(frozen=True)
class CensusConfig:
    """What to generate.

    Attributes:
        train_rows, test_rows: lines of census-income.data and census-income.test.
        seed: the data's seed.
        missing: share of '?' in the columns that have unknown values.
        block_rows: lines generated at a time (the generator's memory).
    """

    train_rows: int = 300
    test_rows: int = 200
    seed: int = 0
    missing: float = 0.15
    block_rows: int = 20_000


def _column(rng: np.random.Generator, name: str, values: tuple[str, ...] | None, rows: int, missing: float) -> np.ndarray:
    """(rows,) object array: one attribute's values as they are written (without the leading space)."""
    if name == "instance weight":
        weights = rng.uniform(30.0, 20000.0, rows)
        decimals = rng.integers(2, 4, rows)
        return np.array([repr(round(float(w), int(d))) for w, d in zip(weights, decimals)], dtype=object)
    if values is None:
        largest, zeros = _CONTINUOUS[name]
        numbers = rng.integers(1, largest + 1, rows)
        numbers[rng.random(rows) < zeros] = 0
        return numbers.astype(str).astype(object)
    if name == "marital stat":  # 'Never married' about as often as in the real files (43%)
        p = np.array([0.43] + [0.57 / (len(values) - 1)] * (len(values) - 1))
        out = np.asarray(values, dtype=object)[rng.choice(len(values), rows, p=p)]
    elif name == "income":
        out = np.asarray(values, dtype=object)[(rng.random(rows) < 0.1).astype(int)]
    else:
        out = np.asarray(values, dtype=object)[rng.integers(0, len(values), rows)]
    if name in MISSING:
        out[rng.random(rows) < missing] = "?"
    return out


def text_blocks(config: CensusConfig, file_name: str) -> Iterator[bytes]:
    """The text of ``file_name`` (census-income.data or .test), ``config.block_rows`` lines at a time."""
    rows = config.train_rows if file_name == TRAIN_FILE else config.test_rows
    rng = np.random.default_rng([config.seed, FILES.index(file_name)])
    done = 0
    while done < rows:
        n = min(config.block_rows, rows - done)
        columns = [_column(rng, name, values, n, config.missing) for name, values in ATTRIBUTES]
        yield "".join(", ".join(line) + "\n" for line in zip(*columns)).encode()
        done += n


def text(config: CensusConfig, file_name: str) -> bytes:
    """The whole text of ``file_name``: for small configs and tests."""
    return b"".join(text_blocks(config, file_name))


def _gzip(source: Path, target: Path, compresslevel: int) -> None:
    with open(source, "rb") as plain, gzip.GzipFile(target, "wb", compresslevel=compresslevel, mtime=0) as packed:
        shutil.copyfileobj(plain, packed, 1 << 20)


def _pack(folder: Path, target: Path, layout: str, tar_members: tuple[str, ...], compresslevel: int, zip_compression: int) -> Path:
    """The text files in ``folder`` laid out as ``layout`` in ``target`` (a folder); returns what was written."""
    target.mkdir(parents=True, exist_ok=True)
    if layout == "text":
        for name in FILES:
            shutil.copyfile(folder / name, target / name)
        return target
    if layout == "gz":
        for name in FILES:
            _gzip(folder / name, target / f"{name}.gz", compresslevel)
        return target
    (folder / "census-income.names").write_text("| a stand-in for UCI's description of the attributes\n")
    tar_path = target / "census.tar.gz" if layout == "tar" else folder / "census.tar.gz"
    with tarfile.open(tar_path, "w:gz", compresslevel=compresslevel) as archive:
        for name in tar_members:
            archive.add(folder / name, arcname=name)
    if layout == "tar":
        return tar_path
    zip_path = target / "census+income+kdd.zip"
    with zipfile.ZipFile(zip_path, "w", zip_compression, compresslevel=compresslevel) as archive:
        archive.write(tar_path, "census.tar.gz")
    return zip_path


def write_download(
    target: str | Path,
    files: dict[str, bytes],
    *,
    layout: str = "zip",
    tar_members: tuple[str, ...] = (TRAIN_FILE, "census-income.names", TEST_FILE),
    compresslevel: int = 6,
    zip_compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Lay out ``files`` (text by file name) in the folder ``target`` as the download has them.

    ``layout``: ``"zip"`` -> ``census+income+kdd.zip`` holding ``census.tar.gz``; ``"tar"`` ->
    ``census.tar.gz`` (its members in the order ``tar_members``, with a stand-in
    ``census-income.names``); ``"gz"`` -> ``census-income.data.gz`` and ``.test.gz``;
    ``"text"`` -> the two text files. ``zip_compression``: how the zip holds the tar.gz. Returns the zip, the tar.gz or ``target``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return _pack(folder, Path(target), layout, tar_members, compresslevel, zip_compression)


def generate_download(target: str | Path, config: CensusConfig, *, layout: str = "zip", compresslevel: int = 6) -> Path:
    """Generate ``config``'s files straight into ``layout`` under ``target``, in bounded memory."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    Path(target).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as scratch:
        folder = Path(scratch)
        for name in FILES:
            with open(folder / name, "wb") as handle:
                for block in text_blocks(config, name):
                    handle.write(block)
        return _pack(folder, Path(target), layout, (TRAIN_FILE, "census-income.names", TEST_FILE), compresslevel, zipfile.ZIP_DEFLATED)

