"""The encoders of an exported model as plain JSON, for servers that do not run mtreclib.

``mtrec export`` writes this file beside the model (``model.onnx`` -> ``model.encoders.json``),
with the model, all or nothing. It holds everything that turns a raw row into the exported
graph's inputs: each field's vocabulary or hash rule, each numerical feature's fill and fitted
transform, each multi-valued field's separator and length cap, and the graph's input names,
dtypes and shapes. docs/serving-encoders.md documents every key and rule; tests/
test_export_encoders.py holds a reference encoder that reads only this file, NumPy and
onnxruntime, and reproduces ``mtrec predict``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mtreclib.core.errors import UserError
from mtreclib.data.encoding import CategoricalEncoder, NumericalEncoder
from mtreclib.serving.export import ExportReport, TensorSpec, export_model, input_specs, output_spec
from mtreclib.serving.inference import Inference

FORMAT = "mtreclib-encoders"
VERSION = 1
SUFFIX = ".encoders.json"

# The hash rules of ``CategoricalEncoder._hash``, stated so that another language can reproduce them.
HASH_RULES = {
    "integer": "splitmix64: the first output of a SplitMix64 generator seeded with the value (its 64-bit two's complement), "
    "i.e. z = value + 0x9E3779B97F4A7C15; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB; "
    "z ^ (z >> 31), all modulo 2**64; id = z % buckets + 1",
    "text": "crc32: CRC-32 (ISO-HDLC, as zlib.crc32, initial value 0) of the value's UTF-8 bytes; id = crc % buckets + 1",
}


def encoders_path(model_path: str | os.PathLike) -> Path:
    """Where the encoders file of a model file goes by default: ``mmoe.onnx`` -> ``mmoe.encoders.json``."""
    path = Path(model_path)
    return path.with_name(path.stem + SUFFIX)


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "dtype": str(spec.dtype).removeprefix("torch."),
        "shape": [int(d) if d.isdigit() else d for d in spec.shape],
    }


def _categorical(encoder: CategoricalEncoder) -> dict[str, Any]:
    spec = encoder.spec
    entry: dict[str, Any] = {"name": spec.name, "column": spec.column, "encoding": {"build": "vocabulary"}.get(encoder.kind, encoder.kind)}
    if encoder.kind == "build":
        entry["value_type"] = "integer" if encoder.to_dict()["value_type"] == "int" else "text"
        entry["vocabulary"] = encoder.values.to_pylist()  # the id of vocabulary[i] is i + 1
        entry |= {"unknown_id": 0, "missing_id": 0}
    elif encoder.kind == "identity":
        entry |= {"max_id": encoder.max_id, "unknown_id": encoder.max_id + 1, "missing_id": None}
    else:
        entry |= {"buckets": spec.hash_buckets, "hash": HASH_RULES, "missing_id": 0}
    entry["vocab_size"] = encoder.vocab_size
    if spec.multi:
        entry |= {"separator": spec.separator, "max_len": spec.max_len, "weights": spec.weights, "pooling": spec.pooling}
    return entry


def _numerical(encoder: NumericalEncoder) -> dict[str, Any]:
    spec = encoder.spec
    return {"name": spec.name, "column": spec.column, "fill": spec.fill, "transform": spec.transform, "params": dict(encoder.params)}


def encoders_document(inference: Inference, model_file: str, fmt: str) -> dict[str, Any]:
    """The encoders file's content for ``inference``'s model exported as ``model_file`` (format ``fmt``).

    A checkpoint whose encoders do not describe its model's features (trained on in-memory
    arrays) has no raw rows to encode: a one-line error.
    """
    inference.check_raw_rows()
    encoders, schema = inference.encoders, inference.schema
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {"file": model_file, "format": fmt, "name": inference.model_name, "dataset": inference.dataset, "epoch": inference.epoch},
        "source_format": encoders.spec.format,
        "inputs": [_tensor(spec) for spec in input_specs(schema)],
        "output": {
            **_tensor(output_spec(schema)), "tasks": list(schema.task_names), "task_types": [schema.task_type(t) for t in range(len(schema.task_names))]
        },
        "categorical": [_categorical(e) for e in encoders.categorical],
        "numerical": [_numerical(e) for e in encoders.numerical],
        "multi_valued": [_categorical(e) for e in encoders.bags],
    }


def export_with_encoders(
    inference: Inference, path: str | os.PathLike, fmt: str, encoders: str | os.PathLike | None = None
) -> tuple[ExportReport, Path | None]:
    """Export ``inference``'s model to ``path`` and its encoders file to ``encoders`` (default
    ``encoders_path(path)``), both or neither.

    A model trained on in-memory arrays has no encoders of raw rows: its model alone is written
    (the path returned is None), unless ``encoders`` asks for the file, which is then refused.
    """
    path = Path(path)
    try:
        document = encoders_document(inference, path.name, fmt)
    except UserError:
        if encoders is not None:
            raise
        return export_model(inference.model, path, fmt, name=inference.model_name), None
    target = Path(encoders) if encoders is not None else encoders_path(path)
    if target.resolve() == path.resolve():
        raise UserError(f"--encoders {target}: is the model's own file; name another")
    text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    return export_model(inference.model, path, fmt, name=inference.model_name, companions={target: text}), target
