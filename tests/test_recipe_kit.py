"""The recipe kit: finding raw files in archives, reading them in pieces, the output folder, the report, the registry."""

from __future__ import annotations

import ast
import dataclasses
import gzip
import io
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtreclib.cli import build_parser, main
from mtreclib.commands.preprocess import PreprocessConfig
from mtreclib.core.errors import DataError, UserError
from mtreclib.core.settings import flag_name, meta_of, setting
from mtreclib.recipes import kit, recipe_classes
from mtreclib.recipes.kit import Output, Place, Recipe, RecipeConfig, Report, integers, locate, read_pieces, run_recipe

TEXT = b"1,0\n2,1\n3,1\n"


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _read(raw: kit.RawFile) -> bytes:
    with raw.open() as file:
        return file.stream.read()


def test_a_file_is_found_in_the_first_place_that_exists_and_read_through_its_archives(tmp_path):
    _zip(tmp_path / "outer.zip", {"folder/inner.tar.gz": _tar_gz({"deep/data.csv": TEXT})})
    places = [Place(tmp_path / "data.csv"), Place(tmp_path / "outer.zip", (("data.csv",), ("inner.tar.gz", "data.csv")))]
    raw = locate("data.csv", places, missing="get it")
    assert raw.members == ("inner.tar.gz", "data.csv") and raw.name == f"{tmp_path}/outer.zip > inner.tar.gz > data.csv"
    assert _read(raw) == TEXT
    (tmp_path / "data.csv").write_bytes(b"plain\n")  # the first place now exists
    assert _read(locate("data.csv", places, missing="get it")) == b"plain\n"
    (tmp_path / "data.csv").unlink()
    (tmp_path / "data.csv.gz").write_bytes(gzip.compress(TEXT))
    raw = locate("data.csv", [Place(tmp_path / "data.csv.gz")], missing="get it")
    with raw.open() as file:
        assert file.stream.read() == TEXT and file.size is None  # a gzip does not record its size


def test_missing_files_and_members_are_one_line_naming_where_it_looked(tmp_path):
    with pytest.raises(UserError, match=rf"^data.csv not found \(looked for {tmp_path}/a.csv, {tmp_path}/b.zip\); download it$"):
        locate("data.csv", [Place(tmp_path / "a.csv"), Place(tmp_path / "b.zip", (("x.tar.gz", "data.csv"),))], missing="download it")
    _zip(tmp_path / "b.zip", {"readme.txt": b"hello"})
    with pytest.raises(DataError, match=r"b.zip: holds no data.csv nor x.tar.gz \(it holds readme.txt\)"):
        locate("data.csv", [Place(tmp_path / "b.zip", (("data.csv",), ("x.tar.gz", "data.csv")))], missing="")
    (tmp_path / "c.tar.gz").write_bytes(_tar_gz({"other.csv": TEXT}))
    raw = locate("data.csv", [Place(tmp_path / "c.tar.gz", (("data.csv",),))], missing="", hint="is it complete?")
    with pytest.raises(DataError, match=r"c.tar.gz: holds no data.csv \(it holds other.csv\); is it complete\?"):
        _read(raw)


def test_a_damaged_archive_is_one_line_naming_the_file_through_its_archives(tmp_path):
    data = _tar_gz({"data.csv": np.random.default_rng(0).integers(0, 10, 200_000).astype(str).astype("S").tobytes()})
    (tmp_path / "d.tar.gz").write_bytes(data[: len(data) // 2])
    raw = locate("data.csv", [Place(tmp_path / "d.tar.gz", (("data.csv",),))], missing="", hint="download it again")
    with pytest.raises(DataError, match=r"d.tar.gz > data.csv: the archive is corrupt or truncated \(.*\); download it again"):
        _read(raw)
    (tmp_path / "e.zip").write_bytes(b"PK\x03\x04 not a zip" * 10)
    with pytest.raises(DataError, match=r"e.zip: cannot read the zip \(.*\); check it"):
        locate("data.csv", [Place(tmp_path / "e.zip", (("data.csv",), ("f.csv",)))], missing="", hint="check it")


def test_read_pieces_gives_typed_rows_with_their_lines_and_refuses_an_empty_file(tmp_path):
    (tmp_path / "x.csv").write_bytes(b"a,b\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(1000)))
    raw = locate("x.csv", [Place(tmp_path / "x.csv")], missing="")
    report = Report("X", tmp_path)
    with raw.open() as file:
        pieces = list(read_pieces(file, ("a", "b"), {"a": pa.int64(), "b": pa.int64()}, report=report, header=True, chunk_bytes=512, progress=False))
    assert len(pieces) > 5 and pieces[0][0].first_line == 2
    assert [v for _, t in pieces for v in t.column("a").to_pylist()] == list(range(1000))
    assert all(piece.first_line == 2 + int(table.column("a")[0].as_py()) for piece, table in pieces)
    assert report.read_rows == 1000
    (tmp_path / "x.csv").write_bytes(b"a,b\n")
    with raw.open() as file, pytest.raises(DataError, match=r"x.csv: the file has a header but no rows; expected rows of 2 values"):
        list(read_pieces(file, ("a", "b"), {"a": pa.int64(), "b": pa.int64()}, header=True, progress=False))


def test_integers_read_missing_markers_as_nulls_and_name_the_first_bad_value():
    assert integers(pa.array(["1", "\\N", "", "-3"]), "f.csv", 2, "age", missing=("\\N",)).to_pylist() == [1, None, None, -3]
    with pytest.raises(DataError, match=r"^f.csv, line 4, column age: expected an integer or \\N, found '2.5'$"):
        integers(pa.array(["1", "\\N", "2.5", "x"]), "f.csv", 2, "age", missing=("\\N",))


def _table(values: list[int]) -> pa.Table:
    return pa.table({"id": pa.array(values, pa.int64()), "click": pa.array([v % 2 for v in values], pa.int8())})


def test_output_is_moved_into_place_only_when_complete_and_counts_what_it_wrote(tmp_path):
    target = tmp_path / "X"
    report = Report("X", target, ("click",))
    with Output(target, report, ("click",)) as output:
        sink = output.parquet("train", _table([]).schema)
        for start in range(0, 10, 3):
            output.write("train", _table(list(range(start, min(start + 3, 10)))))
        output.text("dataset.yaml", "name: X\n")
        assert not target.exists()
    assert sorted(p.name for p in target.iterdir()) == ["dataset.yaml", "train.parquet"] and sink.rows == 10
    assert pq.read_table(target / "train.parquet").column("id").to_pylist() == list(range(10))
    assert (report.outputs["train"].rows, report.outputs["train"].positives) == (10, {"click": 5}) and report.files == ["train.parquet", "dataset.yaml"]
    assert report.lines()[0] == "train: 10 rows; click 50%"
    # An existing folder (holding the download) keeps its other files; a failure changes nothing.
    (target / "download.zip").write_bytes(b"raw")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with pytest.raises(DataError), Output(target, Report("X", target)) as output:
        output.parquet("train", _table([]).schema)
        output.write("train", _table([1, 2]))
        raise DataError("raw.csv", "bad value", line=3)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    with Output(target, Report("X", target)) as output:
        output.parquet("train", _table([]).schema)
        output.write("train", _table([7]))
        output.text("dataset.yaml", "name: X\n")
    assert (target / "download.zip").read_bytes() == b"raw" and pq.read_table(target / "train.parquet").column("id").to_pylist() == [7]


def test_keep_rows_rewrites_an_output_with_the_rows_chosen(tmp_path, monkeypatch):
    monkeypatch.setattr(kit.output, "ROW_GROUP_ROWS", 4)
    with Output(tmp_path / "X", Report("X", tmp_path / "X")) as output:
        with output.parquet("side", _table([]).schema, tally=False) as side:
            for start in range(0, 20, 5):
                side.write(_table(list(range(start, start + 5))))
        keep = np.arange(20) % 3 == 0
        assert output.keep_rows("side", keep) == 2
    assert pq.read_table(tmp_path / "X" / "side.parquet").column("id").to_pylist() == list(range(0, 20, 3))


@dataclass(frozen=True)
class _Config(RecipeConfig):
    double: bool = setting(False, "write every row twice")


class _Tiny(Recipe):
    """A whole recipe in a few lines: one headerless CSV (id,click) to one Parquet file and its spec."""

    names = ("Tiny",)
    page = "https://example.org/tiny"
    title = "a tiny dataset"
    labels = ("click",)
    Config = _Config

    def find(self):
        return [locate("tiny.csv", [Place(self.data_dir / "tiny.csv")], missing=f"get it from {self.page}")]

    def convert(self, files, output):
        output.parquet("train", _table([]).schema)
        with files[0].open() as file:
            for _, table in read_pieces(file, ("id", "click"), {"id": pa.int64(), "click": pa.int8()}, report=output.report, progress=False):
                kit.binary(table.column("click").to_numpy(), file.name, 1, "click")
                for _ in range(2 if self.config.double else 1):
                    output.write("train", table)

    def specs(self, files):
        return {"dataset.yaml": ({"name": self.name, "format": "parquet", "train": "train.parquet", "labels": ["click"]}, "the second line")}


def test_a_recipe_class_runs_through_the_kit(tmp_path):
    (tmp_path / "tiny.csv").write_bytes(TEXT)
    report = _Tiny("Tiny", tmp_path, _Config(double=True), progress=False).run()
    assert pq.read_table(tmp_path / "Tiny" / "train.parquet").column("id").to_pylist() == [1, 2, 3, 1, 2, 3]
    text = (tmp_path / "Tiny" / "dataset.yaml").read_text()
    assert text.startswith(f"# Tiny: a tiny dataset, written by `mtrec preprocess --dataset Tiny` ({__name__}) from\n#   {tmp_path}/tiny.csv\n# the second line\n")
    assert report.outputs["train"].rows == 6 and report.read_rows == 3 and f"wrote train.parquet, dataset.yaml in {tmp_path}/Tiny/" in report.lines()[-1]
    (tmp_path / "tiny.csv").write_bytes(b"1,0\n2,5\n")
    with pytest.raises(DataError, match=r"tiny.csv, line 2, column click: expected 0 or 1, found 5"):
        _Tiny("Tiny", tmp_path, _Config(), progress=False).run()
    assert pq.read_table(tmp_path / "Tiny" / "train.parquet").num_rows == 6  # the earlier output stays


def test_run_recipe_refuses_an_option_of_another_recipe_and_an_unknown_one(tmp_path):
    with pytest.raises(UserError, match="--drop-orphans is an option of AliExpress, not of CensusIncome"):
        run_recipe("CensusIncome", tmp_path, drop_orphans=True)
    with pytest.raises(UserError, match="--shuffle is no option of any recipe"):
        run_recipe("CensusIncome", tmp_path, shuffle=True)
    with pytest.raises(UserError, match="no recipe for dataset 'Nope'; mtrec preprocess knows: .*CensusIncome"):
        run_recipe("Nope", tmp_path)


def test_every_preprocess_flag_is_generated_from_a_settings_class(capsys):
    parser = build_parser()
    preprocess = next(a for a in parser._actions if a.dest == "command").choices["preprocess"]
    flags = {option for action in preprocess._actions for option in action.option_strings} - {"-h", "--help"}
    declared = {flag_name(f.name, f) for cls in (PreprocessConfig, *(r.Config for r in recipe_classes())) for f in dataclasses.fields(cls) if meta_of(f).cli}
    assert flags == declared
    assert main(["preprocess", "--dataset", "Nope", "--no-progress"]) == 2 and "no recipe for dataset 'Nope'" in capsys.readouterr().err


def test_each_recipe_imports_the_kit_never_the_recipes_package_so_there_is_no_cycle():
    folder = Path(kit.__file__).parent.parent
    for path in folder.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == folder:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mtreclib.recipes":
                raise AssertionError(f"{path} imports mtreclib.recipes: {ast.unparse(node)}")
            if isinstance(node, ast.Import) and any(alias.name == "mtreclib.recipes" for alias in node.names):
                raise AssertionError(f"{path} imports mtreclib.recipes")
    # Discovery registered a recipe from each module or package beside the kit.
    modules = {p.stem if p.is_file() else p.name for p in folder.iterdir() if (p.suffix == ".py" or (p / "__init__.py").exists())}
    modules -= {"__init__", "kit"}
    assert modules == {recipe.__module__.split(".")[2] for recipe in recipe_classes()}


def test_sort_distinct_names_the_first_two_rows_of_the_smallest_repeated_key():
    order, ordered, repeat = kit.sort_distinct(np.array([7, 3, 9, 5]))
    assert ordered.tolist() == [3, 5, 7, 9] and order.tolist() == [1, 3, 0, 2] and repeat is None
    _, _, repeat = kit.sort_distinct(np.array([9, 4, 9, 2, 4, 4]))
    assert repeat == (1, 4)  # key 4 (smaller than 9): rows 1 and 4, not row 5
