"""The CensusIncome recipe: generator-made UCI downloads to Parquet splits, checked row by row; bad input."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from generators.census import ATTRIBUTES, TEST_FILE, TRAIN_FILE, CensusConfig, text, write_download

from mtreclib.core.errors import DataError, UserError
from mtreclib.recipes import run_recipe

NAME = "CensusIncome"
CONFIG = CensusConfig(train_rows=400, test_rows=300, seed=7)

# Written out from the MMoE paper and census-income.names, independently of the recipe.
CONTINUOUS = {"age", "wage per hour", "capital gains", "capital losses", "dividends from stocks",
              "num persons worked for employer", "weeks worked in year"}  # fmt: skip
COLLEGE_DEGREES = {"Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)",
                   "Prof school degree (MD DDS DVM LLB JD)", "Doctorate degree(PhD EdD)"}  # fmt: skip
LABEL_SOURCES = {"education", "marital stat", "income"}
SEED = 2018  # the documented split seed
MASK = (1 << 64) - 1


def run(data_dir: Path, name: str, **options: object) -> list[str]:
    """The recipe through the kit's registry, as ``mtrec preprocess`` runs it; its report's lines."""
    return run_recipe(name, data_dir, **options).lines()


def column_name(attribute: str) -> str:
    """``migration code-change in msa`` -> ``migration_code_change_in_msa`` (the documented naming)."""
    return attribute.replace("'", "").replace("-", " ").replace(" ", "_")


def splitmix64(seed: int, index: int) -> int:
    """SplitMix64's ``index``-th (0-based) output for ``seed``, in plain Python integers."""
    z = (seed + (index + 1) * 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def expected_row(line: str) -> dict:
    """What one raw line becomes, by the rules of docs/recipes/census.md."""
    values = [value.strip() for value in line.split(",")]
    assert len(values) == 42
    row = {}
    for (attribute, _), value in zip(ATTRIBUTES, values):
        if attribute in LABEL_SOURCES:
            continue
        if attribute in CONTINUOUS or attribute == "instance weight":
            row[column_name(attribute)] = float(value)
        else:
            row[column_name(attribute)] = None if value == "?" else value
    row["income"] = int(values[41] == "50000+.")
    row["never_married"] = int(values[7] == "Never married")
    row["education"] = int(values[4] in COLLEGE_DEGREES)
    return row


def expected_splits(files: dict[str, bytes]) -> dict[str, list[dict]]:
    train = [expected_row(line) for line in files[TRAIN_FILE].decode().splitlines()]
    test_rows = [expected_row(line) for line in files[TEST_FILE].decode().splitlines()]
    valid = [splitmix64(SEED, r) < 1 << 63 for r in range(len(test_rows))]
    return {
        "train": train,
        "valid": [row for row, v in zip(test_rows, valid) if v],
        "test": [row for row, v in zip(test_rows, valid) if not v],
    }


def read_split(folder: Path, split: str) -> list[dict]:
    return pq.read_table(folder / f"{split}.parquet").to_pylist()


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {TRAIN_FILE: text(CONFIG, TRAIN_FILE), TEST_FILE: text(CONFIG, TEST_FILE)}


def assert_no_output(data_dir: Path) -> None:
    assert not (data_dir / NAME).exists()
    assert not [p.name for p in data_dir.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize(
    "layout, where, tar_members",
    [
        ("zip", "", (TRAIN_FILE, "census-income.names", TEST_FILE)),
        ("tar", NAME, (TEST_FILE, "census-income.names", TRAIN_FILE)),  # the training file after the test file
        ("gz", "", ()),
        ("text", NAME, ()),
    ],
)
def test_generated_download_converts_to_exactly_the_expected_rows(tmp_path, files, layout, where, tar_members):
    kwargs = {"tar_members": tar_members} if tar_members else {}
    write_download(tmp_path / where, files, layout=layout, **kwargs)
    lines = run(tmp_path, NAME, progress=False, chunk_bytes=16 << 10)  # a dozen pieces per file
    expected = expected_splits(files)
    folder = tmp_path / NAME
    for split in ("train", "valid", "test"):
        assert read_split(folder, split) == expected[split], split  # every value, in file order
    assert len(expected["valid"]) + len(expected["test"]) == CONFIG.test_rows
    assert 0.4 < len(expected["valid"]) / CONFIG.test_rows < 0.6
    assert lines[0].startswith(f"train: {CONFIG.train_rows:,} rows; income ")
    assert f"valid: {len(expected['valid']):,} rows" in lines[1] and f"test: {len(expected['test']):,} rows" in lines[2]
    income_rate = sum(row["income"] for row in expected["train"]) / CONFIG.train_rows
    assert f"income {100 * income_rate:.3g}%" in lines[0]
    assert any("census-income.data has 400 lines; census-income.names gives 199,523" in line for line in lines)
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_the_generator_writes_labels_of_both_classes_missing_values_and_trailing_spaces(files):
    rows = expected_splits(files)["train"]
    for task in ("income", "never_married", "education"):
        assert 0 < sum(row[task] for row in rows) < len(rows), task
    assert any(row["hispanic_origin"] is None for row in rows)
    assert b"Foreign born- Not a citizen of U S , " in files[TRAIN_FILE] or b"Foreign born- Not a citizen of U S , " in files[TEST_FILE]
    assert all(line.count(b", ") == 41 for line in files[TRAIN_FILE].splitlines())


def test_the_spec_names_every_parquet_column_once_and_the_paper_tasks(tmp_path, files):
    write_download(tmp_path, files, layout="zip")
    run(tmp_path, NAME, progress=False)
    folder = tmp_path / NAME
    raw_text = (folder / "dataset.yaml").read_text()
    assert raw_text.startswith("# CensusIncome: UCI Census-Income (KDD)") and "written by `mtrec preprocess --dataset CensusIncome`" in raw_text
    assert "census+income+kdd.zip > census.tar.gz > census-income.data" in raw_text
    spec = yaml.safe_load(raw_text)
    assert spec["format"] == "parquet" and spec["name"] == NAME
    assert (spec["train"], spec["valid"], spec["test"]) == ("train.parquet", "valid.parquet", "test.parquet")
    assert spec["labels"] == ["income", "never_married", "education"]
    assert spec["tasks"] == ["income", "never_married"]
    assert spec["sample_weight"] == "instance_weight"
    numerical = [entry["name"] for entry in spec["numerical"]]
    assert numerical == [column_name(a) for a in sorted(CONTINUOUS, key=[name for name, _ in ATTRIBUTES].index)]
    assert {entry.get("transform") for entry in spec["numerical"]} == {"minmax"}
    assert {entry["role"] for entry in spec["categorical"]} == {"user"}
    categorical = [entry["name"] for entry in spec["categorical"]]
    features = categorical + numerical
    assert not {"education", "marital_stat", "income"} & set(features)  # no task sees a label as an input
    assert len(features) == 38 and len(set(features)) == 38
    named = [*features, spec["sample_weight"], *spec["labels"]]
    for split in ("train", "valid", "test"):
        schema = pq.read_schema(folder / spec[split])
        assert sorted(schema.names) == sorted(named)
        assert all(str(schema.field(c).type) == "string" for c in categorical)
        assert all(str(schema.field(c).type) == "double" for c in [*numerical, "instance_weight"])
        assert all(str(schema.field(c).type) == "int8" for c in spec["labels"])


def test_the_split_does_not_depend_on_how_the_files_are_cut(tmp_path, files):
    write_download(tmp_path / "a", files, layout="text")
    write_download(tmp_path / "b", files, layout="text")
    run(tmp_path / "a", NAME, progress=False, chunk_bytes=8 << 10)
    run(tmp_path / "b", NAME, progress=False)
    for split in ("train", "valid", "test"):
        assert read_split(tmp_path / "a" / NAME, split) == read_split(tmp_path / "b" / NAME, split)


# A real line of census-income.data, as public READMEs quote it.
REAL_LINE = (
    "38, Private, 6, 36, 1st 2nd 3rd or 4th grade, 0, Not in universe, Married-civilian spouse present, "
    "Manufacturing-durable goods, Machine operators assmblrs & inspctrs, White, Mexican (Mexicano), Female, "
    "Not in universe, Not in universe, Full-time schedules, 0, 0, 0, Joint one under 65 & one 65+, Not in universe, "
    "Not in universe, Spouse of householder, Spouse of householder, 1032.38, ?, ?, ?, Not in universe under 1 year old, "
    "?, 4, Not in universe, Mexico, Mexico, Mexico, Foreign born- Not a citizen of U S , 0, Not in universe, 2, 12, "
    "95, - 50000."
)


def test_a_real_line_converts_to_the_values_it_holds(tmp_path):
    write_download(tmp_path, {TRAIN_FILE: (REAL_LINE + "\n").encode(), TEST_FILE: (REAL_LINE + "\n").encode()}, layout="text")
    run(tmp_path, NAME, progress=False)
    (row,) = read_split(tmp_path / NAME, "train")
    assert row["age"] == 38.0 and row["num_persons_worked_for_employer"] == 4.0 and row["weeks_worked_in_year"] == 12.0
    assert row["instance_weight"] == 1032.38
    assert row["detailed_industry_recode"] == "6" and row["year"] == "95" and row["veterans_benefits"] == "2"
    assert row["citizenship"] == "Foreign born- Not a citizen of U S"
    assert row["migration_code_change_in_msa"] is None and row["migration_prev_res_in_sunbelt"] is None
    assert row["live_in_this_house_1_year_ago"] == "Not in universe under 1 year old"
    assert (row["income"], row["never_married"], row["education"]) == (0, 0, 0)
    assert "education" in row and "marital_stat" not in row


def test_blank_lines_at_the_end_no_final_line_break_and_crlf_line_ends_change_nothing(tmp_path, files):
    padded = {
        TRAIN_FILE: files[TRAIN_FILE].replace(b"\n", b"\r\n") + b"\r\n\n  \n",
        TEST_FILE: files[TEST_FILE].rstrip(b"\n"),
    }
    write_download(tmp_path, padded, layout="gz")
    run(tmp_path, NAME, progress=False, chunk_bytes=16 << 10)
    expected = expected_splits(files)
    for split in ("train", "valid", "test"):
        assert read_split(tmp_path / NAME, split) == expected[split]


def _edit(data: bytes, line: int, column: int | None, value: str | None) -> bytes:
    """``data`` with 1-based ``line``'s 1-based ``column`` set to ``value`` (None: the value dropped)."""
    lines = data.decode().splitlines()
    values = lines[line - 1].split(",")
    if value is None:
        del values[column - 1]
    else:
        values[column - 1] = value
    lines[line - 1] = ",".join(values)
    return ("\n".join(lines) + "\n").encode()


MARITAL = "expected one of the 7 marital statuses of census-income.names"
EDUCATION = "expected one of the 17 education levels of census-income.names"
BAD_TEXT = {
    # case: (file, edit, message, line, column)
    "a value too few": (TRAIN_FILE, lambda t: _edit(t, 17, 30, None), "expected 42 values, found 41", 17, None),
    "a value too many": (TEST_FILE, lambda t: _edit(t, 3, 5, " 9th grade, 9th grade"), "expected 42 values, found 43", 3, None),
    "text for a number": (TEST_FILE, lambda t: _edit(t, 5, 1, "abc"), "expected a number, found 'abc'", 5, "age"),
    "unknown number": (TRAIN_FILE, lambda t: _edit(t, 250, 17, " ?"), "expected a number, found ' ?'", 250, "capital_gains"),
    "empty number": (TRAIN_FILE, lambda t: _edit(t, 9, 40, ""), "missing value; expected a number", 9, "weeks_worked_in_year"),
    "infinite number": (TRAIN_FILE, lambda t: _edit(t, 11, 19, " inf"), "expected a finite number, found inf", 11, "dividends_from_stocks"),
    "negative weight": (TEST_FILE, lambda t: _edit(t, 2, 25, " -3.5"), "expected a finite weight >= 0, found -3.5", 2, "instance_weight"),
    "empty nominal value": (TRAIN_FILE, lambda t: _edit(t, 8, 2, " "), "missing value; expected a value (? for unknown)", 8, "class_of_worker"),
    "income outside its values": (TRAIN_FILE, lambda t: _edit(t, 33, 42, " 50000."), "expected '- 50000.' or '50000+.', found '50000.'", 33, "income"),
    "unknown marital status": (TEST_FILE, lambda t: _edit(t, 41, 8, " ?"), f"{MARITAL}, found '?'", 41, "marital_stat"),
    "education outside its values": (TRAIN_FILE, lambda t: _edit(t, 4, 5, " College"), f"{EDUCATION}, found 'College'", 4, "education"),
    "empty label": (TEST_FILE, lambda t: _edit(t, 6, 42, ""), "expected '- 50000.' or '50000+.', found ''", 6, "income"),
    "empty line": (TEST_FILE, lambda t: t.replace(b"\n", b"\n\n", 6)[: len(t) + 6], "an empty line; expected 42 values", 2, None),
    "empty file": (TEST_FILE, lambda t: b"", "the file is empty; expected rows of 42 values", None, None),
    "blank file": (TRAIN_FILE, lambda t: b"\n \n", "the file is empty; expected rows of 42 values", None, None),
}


@pytest.mark.parametrize("case", list(BAD_TEXT))
def test_bad_lines_stop_with_one_line_naming_file_line_and_column_and_write_nothing(tmp_path, files, case):
    file_name, edit, message, line, column = BAD_TEXT[case]
    write_download(tmp_path, {**files, file_name: edit(files[file_name])}, layout="zip")
    with pytest.raises(DataError) as error:
        run(tmp_path, NAME, progress=False, chunk_bytes=32 << 10)
    text_ = str(error.value)
    assert "\n" not in text_
    assert f"census+income+kdd.zip > census.tar.gz > {file_name}" in text_ and message in text_, text_
    if line is not None:
        assert f", line {line}" in text_, text_
    assert (f", column {column}:" in text_) if column is not None else ", column" not in text_, text_
    assert_no_output(tmp_path)


def test_a_missing_download_names_the_file_the_places_looked_and_the_page(tmp_path):
    with pytest.raises(UserError) as error:
        run(tmp_path, NAME, progress=False)
    message = str(error.value)
    assert message.startswith(f"census-income.data not found (looked for {tmp_path}/census-income.data, {tmp_path}/{NAME}/census-income.data, ")
    assert f"{tmp_path}/{NAME}/census+income+kdd.zip); download census+income+kdd.zip from " in message
    assert "https://archive.ics.uci.edu/dataset/117/census+income+kdd" in message


def test_a_truncated_zip_is_an_error(tmp_path, files):
    zip_path = write_download(tmp_path, files, layout="zip")
    zip_path.write_bytes(zip_path.read_bytes()[:-200])  # the central directory is gone
    with pytest.raises(DataError, match=r"census\+income\+kdd.zip: cannot read the zip .*is the download complete\?"):
        run(tmp_path, NAME, progress=False)
    assert_no_output(tmp_path)


@pytest.mark.parametrize("layout", ["tar", "gz"])
def test_a_truncated_gzip_is_an_error(tmp_path, files, layout):
    write_download(tmp_path, files, layout=layout)
    damaged = tmp_path / ("census.tar.gz" if layout == "tar" else f"{TEST_FILE}.gz")
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size * 3 // 4])
    with pytest.raises(DataError, match=r"(census.tar.gz > census-income.test|census-income.test.gz): .*(truncated|cannot read)"):
        run(tmp_path, NAME, progress=False)
    assert_no_output(tmp_path)


def test_damaged_compressed_data_in_the_zip_is_an_error(tmp_path, files):
    zip_path = write_download(tmp_path, files, layout="zip", zip_compression=zipfile.ZIP_STORED)  # the tar.gz as it is
    data = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + 2000  # inside the tar.gz's deflate stream
    for offset in range(start, start + 64):
        data[offset] ^= 0x5A
    zip_path.write_bytes(bytes(data))
    # Garbled deflate data fails in zlib, or decodes to garbled lines that fail the parse: either way one line.
    where = r"census\+income\+kdd.zip > census.tar.gz > census-income.data(, line \d+)?: "
    with pytest.raises(DataError, match=where + ".*(corrupt|cannot read|expected)"):
        run(tmp_path, NAME, progress=False)
    assert_no_output(tmp_path)


def test_archives_without_the_file_are_an_error(tmp_path, files):
    write_download(tmp_path, files, layout="tar", tar_members=(TRAIN_FILE, "census-income.names"))
    with pytest.raises(DataError, match=r"census.tar.gz: holds no census-income.test \(it holds census-income.data, census-income.names\)"):
        run(tmp_path, NAME, progress=False)
    assert_no_output(tmp_path)
    (tmp_path / "census.tar.gz").unlink()
    with zipfile.ZipFile(tmp_path / "census+income+kdd.zip", "w") as archive:
        archive.writestr("readme.txt", "nothing here")
    with pytest.raises(DataError, match=r"census\+income\+kdd.zip: holds no census-income.data nor census-income.data.gz nor census.tar.gz \(it holds readme.txt\)"):
        run(tmp_path, NAME, progress=False)
    assert_no_output(tmp_path)


def test_a_download_inside_the_output_folder_stays_and_a_failure_keeps_the_earlier_output(tmp_path, files):
    folder = tmp_path / NAME
    write_download(folder, files, layout="text")
    run(tmp_path, NAME, progress=False)
    written = {name: (folder / name).read_bytes() for name in ("train.parquet", "valid.parquet", "test.parquet", "dataset.yaml")}
    assert (folder / TRAIN_FILE).read_bytes() == files[TRAIN_FILE]
    (folder / TEST_FILE).write_bytes(b"1, 2, 3\n")
    with pytest.raises(DataError, match="census-income.test, line 1: expected 42 values, found 3"):
        run(tmp_path, NAME, progress=False)
    assert {name: (folder / name).read_bytes() for name in written} == written
    assert sorted(p.name for p in folder.iterdir()) == sorted([*written, TRAIN_FILE, TEST_FILE])
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_a_gzipped_file_is_preferred_to_the_zip_and_a_text_file_to_both(tmp_path, files):
    write_download(tmp_path, {TRAIN_FILE: b"broken\n", TEST_FILE: b"broken\n"}, layout="zip")
    (tmp_path / f"{TRAIN_FILE}.gz").write_bytes(gzip.compress(files[TRAIN_FILE]))
    (tmp_path / TEST_FILE).write_bytes(files[TEST_FILE])
    run(tmp_path, NAME, progress=False)
    assert read_split(tmp_path / NAME, "train") == expected_splits(files)["train"]
    assert "census-income.data.gz" in (tmp_path / NAME / "dataset.yaml").read_text()
