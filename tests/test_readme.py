"""The README runs as written: its first tour, then "Using a trained model" with its Python
examples, block after block, in a fresh folder, as a newcomer would type them.

Each fenced ``sh`` block's commands (``\\`` continues a line, ``#`` starts a comment) go to
``mtreclib.cli.main``, the function of the ``mtrec`` console script, in this process (a new
process per command would spend most of the test starting PyTorch), and must exit 0; each
``python`` block runs as a script. The tour's ``mtrec train --config run.yaml`` reads the
``# run.yaml`` block of "Configuration", written to run.yaml as a reader would. Nothing else
is added or changed: a README edit that breaks a block fails here. PyTorch runs on one thread
(as under ``OMP_NUM_THREADS=1``): on cores shared with other jobs, its second thread's waits
cost several times the work (measured: 122 s of CPU for the blocks against 16 s on one).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from mtreclib.cli import main
from mtreclib.data.myshop import SPEC

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole line, e.g. ``## Quick start``) up to the next heading of its
    level or above; lines inside fenced blocks (a ``# comment``) are no headings."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines(keepends=True)
    start = lines.index(heading + "\n")
    fenced = False
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[end]):
            return "".join(lines[start:end])
    return "".join(lines[start:])


def blocks(text: str, *languages: str) -> list[tuple[str, str]]:
    """The fenced blocks of ``text`` in these languages, in order: (language, code)."""
    return [(language, code) for language, code in FENCE.findall(text) if language in languages]


def tour(text: str) -> str:
    """The first shell block after "A first tour" in the Quick start."""
    quick = section(text, "## Quick start")
    return blocks(quick[quick.index("A first tour") :], "sh")[0][1]


def named_block(text: str, name: str) -> str:
    """The block whose first line is ``# NAME`` (a file the README asks its reader to write)."""
    found = [code for _, code in FENCE.findall(text) if re.match(rf"# {re.escape(name)}\s", code)]
    assert len(found) == 1, f"README.md: expected one block starting '# {name}', found {len(found)}"
    return found[0]


def commands(code: str) -> list[list[str]]:
    """A shell block's commands, each as its words, without comments."""
    found = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "mtrec", f"README.md: the test runs mtrec commands, not {line!r}"
            found.append(words)
    return found


def test_the_readme_blocks_are_found_where_the_test_expects_them():
    text = README.read_text()
    assert "mtrec generate --dataset myshop" in tour(text)
    using = section(text, "## Using a trained model")
    assert [language for language, _ in blocks(using, "sh", "python")] == ["sh", "sh", "python", "python"]
    assert commands("mtrec a \\\n  --b c   # note\n# only a note\n\nmtrec d 'e f'") == [["mtrec", "a", "--b", "c"], ["mtrec", "d", "e f"]]
    with pytest.raises(AssertionError, match="the test runs mtrec commands"):
        commands("make train")


def test_the_myshop_spec_the_readme_shows_is_the_one_generate_writes():
    assert named_block(README.read_text(), "data/myshop/dataset.yaml") == SPEC


def test_the_tour_and_using_a_trained_model_run_as_written(tmp_path, monkeypatch, capsys, one_thread):
    text = README.read_text()
    monkeypatch.chdir(tmp_path)
    Path("run.yaml").write_text(named_block(text, "run.yaml"))
    steps = [("sh", tour(text)), *blocks(section(text, "## Using a trained model"), "sh", "python")]
    for number, (language, code) in enumerate(steps, 1):
        if language == "python":
            exec(compile(code, f"README.md (block {number})", "exec"), {"__name__": "readme"})  # noqa: S102 - the README's own code
            continue
        for words in commands(code):
            status = main(words[1:])
            assert status == 0, f"README.md: `{shlex.join(words)}` exited {status}: {capsys.readouterr().err.strip()[-500:]}"
    out = capsys.readouterr().out
    assert "test results: ple on myshop" in out and "test results: mmoe on myshop" in out
    for path in ("chkpt/myshop_ple/run-2", "valid.json", "scores.parquet", "mmoe.onnx", "data/shop_frames/train.parquet"):
        assert Path(path).exists(), path
    # The example has something to learn: the mmoe the README trains beats chance on every task.
    results = json.loads(Path("chkpt/myshop_mmoe/run-1/results.json").read_text())
    assert all(task["auc"] > 0.6 for task in results["tasks"].values()), results["tasks"]
