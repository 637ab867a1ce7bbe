"""Raw files in the layout of the Ali-CCP download (Tianchi dataset 408), for tests and benchmarks.

The values are random; the layout is the real one, as the publisher's page describes it and as
the lines printed from the real files by public reproductions show:

- ``sample_train.tar.gz`` holds ``sample_skeleton_train.csv`` and ``common_features_train.csv``
  (``sample_test.tar.gz`` the same for ``test``); headerless, comma-separated, no quoting, ``\\n``
  line ends.
- A skeleton line: ``sample_id,click,conversion,common_feature_index,feature_count,feature_list``,
  e.g. ``11515523,0,0,d5f794198192a713,8,207\\x028718436\\x031.0\\x01210\\x02...``.
- A common-features line: ``common_feature_index,feature_count,feature_list``.
- A feature list: features joined by ``\\x01``; a feature is ``field\\x02feature_id\\x03value``.
  Fields group their features together, in no fixed order of fields; feature ids are global
  integers (each field has its own range); values are ``1.0`` for one-hot fields and log counts
  written with at most five decimals (``1.09861``, ``0.69315``) for the behaviour fields.
- The common-feature index is 16 hex digits; consecutive skeleton lines share it in runs.

User fields (101, 121..129 and the behaviour lists 109_14, 110_14, 127_14, 150_14) are in the
common features, item and context fields (205, 206, 207, 210, 216, 508, 509, 702, 853, 301) in
the skeleton. Profile fields, the brand (216) and the combination fields are missing on some
lines, and behaviour lists are sometimes empty (the field is then absent). The common pool of a
split has ``common_rows`` rows whatever the number of samples, so a benchmark's growth in
samples does not grow the table the recipe holds. The test split draws ids from 10% wider ranges
than the training split.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# Field ids of the ESMM paper, by side. The generator keeps its own list (not the recipe's), so a
# field the recipe forgot or misplaces shows up in the tests.
USER_SINGLE = ("101", "121", "122", "124", "125", "126", "127", "128", "129")
USER_MULTI = ("109_14", "110_14", "127_14", "150_14")
ITEM_SINGLE = ("205", "206", "207", "216", "301")
ITEM_MULTI = ("210", "508", "509", "702", "853")
FIELDS = USER_SINGLE + USER_MULTI + ITEM_SINGLE + ITEM_MULTI

# Distinct values per field (training split) and the chance that a line has the field at all.
_VOCAB = {
    "101": 5000, "121": 98, "122": 14, "124": 3, "125": 8, "126": 4, "127": 4, "128": 3, "129": 5,
    "109_14": 600, "110_14": 3000, "127_14": 2000, "150_14": 1500,
    "205": 20000, "206": 600, "207": 3000, "216": 2000, "301": 4,
    "210": 1500, "508": 900, "509": 4000, "702": 3000, "853": 2500,
}  # fmt: skip
_PRESENT = {"121": 0.95, "122": 0.95, "124": 0.95, "125": 0.95, "126": 0.9, "127": 0.9, "128": 0.9, "129": 0.9, "216": 0.8}
_LOG_VALUED = USER_MULTI + ("508", "509", "702", "853")

SPLITS = ("train", "test")
LAYOUTS = ("packed", "unpacked")


def skeleton_name(split: str) -> str:
    return f"sample_skeleton_{split}.csv"


def common_name(split: str) -> str:
    return f"common_features_{split}.csv"


def archive_name(split: str) -> str:
    return f"sample_{split}.tar.gz"


@dataclass(frozen=True)
class AliCCPConfig:
    """What to generate.

    Attributes:
        train_samples, test_samples: skeleton lines per split.
        common_rows: common-feature lines per split (the pool samples draw from).
        history_mean: mean number of features of each behaviour list (109_14 ...) per common
            row; the real files hold about 500 features per common row in all, so about 125.
        run_length: mean number of consecutive skeleton lines sharing a common row.
        click_rate: share of samples clicked; conversion_rate: share of clicks converted.
        seed: the data's seed.
        block_samples: skeleton lines generated at a time (memory of the generator).
    """

    train_samples: int = 600
    test_samples: int = 250
    common_rows: int = 80
    history_mean: float = 4.0
    run_length: float = 5.0
    click_rate: float = 0.2
    conversion_rate: float = 0.25
    seed: int = 0
    block_samples: int = 200_000
    vocabulary: tuple[tuple[str, int], ...] = ()  # (field, ids) overriding the small defaults (scale benchmarks)


def _field_base(field: str, stride: int = 100_000) -> int:
    """The first global feature id of ``field`` (ids of different fields never collide)."""
    return 1_000_000 + stride * FIELDS.index(field)


def _vocabularies(config: AliCCPConfig) -> tuple[dict[str, int], int]:
    """Each field's number of ids, and the distance between fields' first ids (at least the largest)."""
    vocab = {**_VOCAB, **dict(config.vocabulary)}
    stride = 100_000
    while stride < 1.1 * max(vocab.values()) + 1:
        stride *= 10
    return vocab, stride


def _log_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) log counts in units of 1e-5: log(1 + c) of a count c, decayed on a third of them."""
    counts = 1 + rng.geometric(0.35, n).astype(np.float64)
    decay = np.where(rng.random(n) < 0.33, rng.uniform(0.3, 1.0, n), 1.0)
    return np.rint(np.log1p(counts * decay) * 1e5).astype(np.int64)


def _value_text(units: np.ndarray) -> pa.Array:
    """``units`` (1e-5) as the download writes values: ``1.0``, ``0.69315``, ``2.5``."""
    whole = pc.cast(pa.array(units // 100_000), pa.string())
    fraction = pc.utf8_rtrim(pc.utf8_lpad(pc.cast(pa.array(units % 100_000), pa.string()), 5, "0"), "0")
    fraction = pc.if_else(pc.equal(pc.utf8_length(fraction), 0), "0", fraction)
    return pc.binary_join_element_wise(whole, fraction, ".")


def _feature_lists(
    rng: np.random.Generator, counts: dict[str, np.ndarray], scale: float, vocab: tuple[dict[str, int], int] = (_VOCAB, 100_000)
) -> tuple[pa.Array, np.ndarray]:
    """Feature-list texts of ``n`` lines, and their (n,) feature counts.

    ``counts[field]`` is the (n,) number of features of ``field`` on each line. Each line lists
    its fields in a random order, the features of one field together.
    """
    n = len(next(iter(counts.values())))
    place = np.argsort(rng.random((n, len(counts))), axis=1).astype(np.int64)  # each line's order of fields
    rows, codes, ids, units, keys = [], [], [], [], []
    for slot, (field, per_row) in enumerate(counts.items()):
        total = int(per_row.sum())
        row = np.repeat(np.arange(n), per_row)
        rows.append(row)
        codes.append(np.full(total, FIELDS.index(field), dtype=np.int64))
        ids.append(_field_base(field, vocab[1]) + rng.integers(0, max(1, int(vocab[0][field] * scale)), total))
        units.append(_log_values(rng, total) if field in _LOG_VALUED else np.full(total, 100_000, dtype=np.int64))
        keys.append(row * 64 + place[row, slot])
    order = np.argsort(np.concatenate(keys), kind="stable")  # by line, then field; features as drawn
    row, code, ident, unit = (np.concatenate(parts)[order] for parts in (rows, codes, ids, units))
    features = pc.binary_join_element_wise(
        pc.binary_join_element_wise(pa.array(FIELDS).take(pa.array(code)), pc.cast(pa.array(ident), pa.string()), "\x02"),
        _value_text(unit),
        "\x03",
    )
    per_line = np.bincount(row, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(per_line)]).astype(np.int32)
    lists = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), features), "\x01")
    return lists, per_line


def _present(rng: np.random.Generator, field: str, n: int) -> np.ndarray:
    return (rng.random(n) < _PRESENT.get(field, 1.0)).astype(np.int64)


def _hex_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) distinct 64-bit keys (high bit set on about half of them)."""
    keys = np.unique(rng.integers(0, 2**64 - 1, n + 16, dtype=np.uint64, endpoint=True))
    while len(keys) < n:  # a collision in 2**64: draw again
        keys = np.unique(np.concatenate([keys, rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)]))
    return rng.permutation(keys)[:n]


def hex_text(keys: np.ndarray) -> pa.Array:
    """Keys as 16 lower-case hex digits."""
    return pa.array([f"{int(k):016x}" for k in keys])


def _csv(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return sink.getvalue().to_pybytes()


def common_keys(config: AliCCPConfig, split: str) -> pa.Array:
    """The (K,) common-feature indexes of ``split`` (hex text), in file order."""
    return hex_text(_hex_keys(np.random.default_rng([config.seed, SPLITS.index(split), 0]), config.common_rows))


def common_blocks(config: AliCCPConfig, split: str, keys: pa.Array, block_rows: int = 2000) -> Iterator[bytes]:
    """The common-features file of ``split`` as text, ``block_rows`` lines at a time."""
    rng = np.random.default_rng([config.seed, SPLITS.index(split), 2])
    scale = 1.0 if split == "train" else 1.1
    for start in range(0, len(keys), block_rows):
        k = min(block_rows, len(keys) - start)
        counts = {"101": np.ones(k, dtype=np.int64)}
        counts.update({field: _present(rng, field, k) for field in USER_SINGLE[1:]})
        counts.update({field: rng.poisson(config.history_mean, k) for field in USER_MULTI})
        lists, per_line = _feature_lists(rng, counts, scale, _vocabularies(config))
        yield _csv(pa.table({"key": keys.slice(start, k), "count": pa.array(per_line), "features": lists}))


def skeleton_blocks(config: AliCCPConfig, split: str, keys: pa.Array) -> Iterator[bytes]:
    """The skeleton file of ``split`` as text, a block of lines at a time; ``keys`` from ``common_keys``."""
    rng = np.random.default_rng([config.seed, SPLITS.index(split), 1])
    scale = 1.0 if split == "train" else 1.1
    total = config.train_samples if split == "train" else config.test_samples
    done = 0
    while done < total:
        n = min(config.block_samples, total - done)
        runs = rng.geometric(1.0 / config.run_length, n)
        runs = runs[: np.searchsorted(np.cumsum(runs), n) + 1]
        runs[-1] -= int(runs.sum()) - n
        key = keys.take(pa.array(np.repeat(rng.integers(0, len(keys), len(runs)), runs)))
        click = (rng.random(n) < config.click_rate).astype(np.int8)
        conversion = (click == 1) & (rng.random(n) < config.conversion_rate)
        counts = {field: _present(rng, field, n) for field in ITEM_SINGLE}
        counts["210"] = 1 + rng.poisson(0.8, n)
        counts.update({field: rng.binomial(2, 0.3, n) for field in ("508", "509", "702", "853")})
        lists, per_line = _feature_lists(rng, counts, scale, _vocabularies(config))
        table = pa.table(
            {
                "sample_id": pa.array(np.arange(done + 1, done + n + 1)),
                "click": pa.array(click),
                "conversion": pa.array(conversion.astype(np.int8)),
                "key": key,
                "count": pa.array(per_line),
                "features": lists,
            }
        )
        done += n
        yield _csv(table)


def raw_texts(config: AliCCPConfig) -> dict[str, bytes]:
    """The four CSVs in memory, by file name: for small configs and tests."""
    files = {}
    for split in SPLITS:
        keys = common_keys(config, split)
        files[common_name(split)] = b"".join(common_blocks(config, split, keys))
        files[skeleton_name(split)] = b"".join(skeleton_blocks(config, split, keys))
    return files


def _add_member(archive: tarfile.TarFile, name: str, data: BinaryIO, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    archive.addfile(info, data)


def write_download(
    data_dir: str | Path,
    files: dict[str, bytes],
    *,
    layout: str = "packed",
    folder: str | None = None,
    skeleton_first: bool = True,
) -> Path:
    """Lay out the four CSVs (text by file name) as the download has them.

    ``layout``: ``"packed"`` -> ``sample_train.tar.gz`` and ``sample_test.tar.gz`` holding the two
    CSVs of their split (the skeleton first unless ``skeleton_first`` is False); ``"unpacked"`` ->
    the four CSVs. They go in ``data_dir``, or ``data_dir/folder`` if ``folder`` is given.
    Returns that folder.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    target = Path(data_dir) / folder if folder else Path(data_dir)
    target.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        names = [skeleton_name(split), common_name(split)]
        if layout == "unpacked":
            for name in names:
                (target / name).write_bytes(files[name])
            continue
        with tarfile.open(target / archive_name(split), "w:gz") as archive:
            for name in names if skeleton_first else names[::-1]:
                _add_member(archive, name, io.BytesIO(files[name]), len(files[name]))
    return target


@contextlib.contextmanager
def _spooled(folder: Path, name: str) -> Iterator[BinaryIO]:
    """A temporary file in ``folder`` (a tar member's size must be known before its data)."""
    handle, path = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    try:
        with os.fdopen(handle, "w+b") as stream:
            yield stream
    finally:
        os.unlink(path)


def generate_download(data_dir: str | Path, config: AliCCPConfig, *, layout: str = "packed", compresslevel: int = 1) -> Path:
    """Generate ``config``'s download straight into files, in bounded memory (for benchmarks)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    target = Path(data_dir)
    target.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        keys = common_keys(config, split)
        if layout == "unpacked":
            files = {common_name(split): common_blocks(config, split, keys), skeleton_name(split): skeleton_blocks(config, split, keys)}
            for name, blocks in files.items():
                with open(target / name, "wb") as sink:
                    for block in blocks:
                        sink.write(block)
            continue
        with tarfile.open(target / archive_name(split), "w:gz", compresslevel=compresslevel) as archive:
            files = {skeleton_name(split): skeleton_blocks(config, split, keys), common_name(split): common_blocks(config, split, keys)}
            for name, blocks in files.items():
                with _spooled(target, name) as spool:
                    for block in blocks:
                        spool.write(block)
                    size = spool.tell()
                    spool.seek(0)
                    _add_member(archive, name, spool, size)
    return target
