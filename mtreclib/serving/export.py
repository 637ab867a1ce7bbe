"""A trained model as a file another runtime serves: ONNX, TorchScript or a torch.export program.

The exported module takes the encoded feature tensors, by name, and returns per-task
probabilities (the sigmoid of the model's logits; a regression task's prediction as it is), for
any batch size:

    categorical        (batch, F) int64      ids, each field's within its vocabulary (0: out of vocabulary)
    numerical          (batch, M) float32    the transformed numerical features
    <bag>_values       (<bag>_values,) int64 each multi-valued field's ids, all rows' values one after another
    <bag>_offsets      (batch + 1,) int64    where each row's values start, and the end
    <bag>_weights      (<bag>_values,) float32  per-value weights (weighted fields only)
    -> probabilities   (batch, T) float32    one column per task, in the checkpoint's task order

An input of no width (no numerical features, no single-valued fields) is left out. Encoding raw
rows into these tensors is the encoders' work (``mtrec predict``, ``Model.encode``); ``mtrec export``
writes them beside the file as plain JSON for other languages (``serving/encoders_file.py``).

The exported program is the model's dense computation (``split_products`` off: the split path
picks its plan from the batch's distinct ids, which a static graph cannot). Every export is
checked before it is kept: the file is loaded back and run on a batch of another size than the
one it was traced with, and must agree with PyTorch; ONNX files are run through onnxruntime
(when installed). A model the exporter cannot handle is refused in one line with the
exporter's reason, and so is a model whose class states ``export_refusal``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtreclib.core.atomic import atomic_outputs, write_error, write_errors
from mtreclib.core.errors import UserError
from mtreclib.core.metrics import task_scores
from mtreclib.core.schema import Bag, FeatureSchema
from mtreclib.models import MultiTaskModel
from mtreclib.nn.layers import set_split_products

FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "pt2": ".pt2"}
OUTPUT = "probabilities"
TOLERANCE = 1e-4  # float32 probabilities of one computation done in another order


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the exported module."""

    name: str
    shape: tuple[str, ...]
    dtype: torch.dtype

    def __str__(self) -> str:
        return f"{self.name} ({', '.join(self.shape)}) {str(self.dtype).removeprefix('torch.')}"


def input_specs(schema: FeatureSchema) -> list[TensorSpec]:
    """The exported module's inputs for ``schema``, in order."""
    specs = []
    if schema.field_num:
        specs.append(TensorSpec("categorical", ("batch", str(schema.field_num)), torch.int64))
    if schema.numerical_num:
        specs.append(TensorSpec("numerical", ("batch", str(schema.numerical_num)), torch.float32))
    for bag in schema.bags:
        specs.append(TensorSpec(f"{bag.name}_values", (f"{bag.name}_values",), torch.int64))
        specs.append(TensorSpec(f"{bag.name}_offsets", ("batch + 1",), torch.int64))
        if bag.weighted:
            specs.append(TensorSpec(f"{bag.name}_weights", (f"{bag.name}_values",), torch.float32))
    return specs


def output_spec(schema: FeatureSchema) -> TensorSpec:
    return TensorSpec(OUTPUT, ("batch", str(schema.task_num)), torch.float32)


class ProbabilityModule(nn.Module):
    """A model's per-task probabilities from the flat encoded tensors (the order of ``input_specs``)."""

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self.model = model
        schema = model.schema
        self.has_categorical = schema.field_num > 0
        self.has_numerical = schema.numerical_num > 0
        self.numerical_num = schema.numerical_num
        self.weighted = tuple(bag.weighted for bag in schema.bags)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Tensors of ``input_specs`` -> (B, T) probabilities."""
        rest = iter(inputs)
        categorical = next(rest) if self.has_categorical else None
        numerical = next(rest) if self.has_numerical else None
        bags = []
        for weighted in self.weighted:
            values, offsets = next(rest), next(rest)
            bags.append(Bag(values, offsets, next(rest) if weighted else None))
        batch = (categorical if categorical is not None else numerical if numerical is not None else bags[0].offsets[1:]).shape[0]
        if categorical is None:
            categorical = torch.zeros(batch, 0, dtype=torch.long, device=bags[0].values.device)  # (B, 0)
        if numerical is None:
            numerical = torch.zeros(batch, 0, device=categorical.device)  # (B, 0)
        return task_scores(self.model(categorical, numerical, tuple(bags)).float(), self.model.schema.task_types)  # (B, T)


def example_inputs(schema: FeatureSchema, rows: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Valid inputs of ``rows`` rows: ids within every vocabulary, rows of 0 to 3 values in each bag."""
    generator = torch.Generator().manual_seed(seed)
    tensors: list[torch.Tensor] = []
    if schema.field_num:
        tensors.append(torch.stack([torch.randint(0, dim, (rows,), generator=generator) for dim in schema.field_dims], dim=1))
    if schema.numerical_num:
        tensors.append(torch.randn(rows, schema.numerical_num, generator=generator))
    for bag in schema.bags:
        lengths = torch.arange(rows) % 4  # (B,) 0, 1, 2, 3, 0, ...: empty rows too
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        values = torch.randint(0, bag.vocab_size, (int(offsets[-1]),), generator=generator)
        tensors += [values, offsets]
        if bag.weighted:
            tensors.append(torch.rand(len(values), generator=generator) + 0.5)
    return tuple(tensors)


def _dynamic_shapes(schema: FeatureSchema) -> tuple:
    batch = torch.export.Dim("batch", min=1)
    shapes: list[dict] = []
    if schema.field_num:
        shapes.append({0: batch})
    if schema.numerical_num:
        shapes.append({0: batch})
    for k, bag in enumerate(schema.bags):
        values = torch.export.Dim(f"values_{k}", min=0)
        shapes += [{0: values}, {0: batch + 1}]
        if bag.weighted:
            shapes.append({0: values})
    return (tuple(shapes),)  # one entry: forward's *inputs


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' progress lines, warnings and log messages kept off the user's terminal."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export", "torch.fx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        # The exporters print progress, and on a failure the whole graph, besides raising.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _reason(error: BaseException) -> str:
    """The innermost cause of an exporter's failure, in one line."""
    seen = {id(error)}
    while (cause := error.__cause__ or error.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        error = cause
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:300] if lines else 'no message'}"


def check_format(fmt: str) -> None:
    """Refuse an unknown format, or ONNX without the packages its exporter needs, before any work."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        missing = [name for name in ("onnx", "onnxscript") if _missing(name)]
        if missing:
            raise UserError(f"--format onnx needs the package{'s' * (len(missing) > 1)} {' and '.join(missing)}: pip install 'mtreclib[onnx]'")


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


@dataclass(frozen=True)
class ExportReport:
    """What was written and how closely it agrees with PyTorch."""

    path: Path
    format: str
    inputs: tuple[TensorSpec, ...]
    output: TensorSpec
    max_difference: float | None  # None: not checked (onnxruntime is not installed)

    def describe(self) -> str:
        checked = (
            f"agrees with PyTorch within {self.max_difference:.1e}" if self.max_difference is not None
            else "not checked against PyTorch (pip install onnxruntime to check)"
        )  # fmt: skip
        inputs = "; ".join(str(spec) for spec in self.inputs)
        return f"{self.path} ({self.format}): inputs {inputs} -> {self.output}; {checked}"


def _run_export(module: ProbabilityModule, example: tuple[torch.Tensor, ...], fmt: str, path: Path, names: list[str]) -> None:
    if fmt == "torchscript":
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(path))
        return
    program = torch.export.export(module, example, dynamic_shapes=_dynamic_shapes(module.model.schema), strict=False)
    if fmt == "pt2":
        torch.export.save(program, str(path))
        return
    torch.onnx.export(program, example, str(path), input_names=names, output_names=[OUTPUT], dynamo=True, external_data=False, verbose=False)


def run_exported(path: str | os.PathLike, fmt: str, inputs: Sequence[torch.Tensor], names: Sequence[str]) -> np.ndarray | None:
    """Run an exported file on ``inputs``: (B, T) probabilities, or None when its runtime is missing."""
    if fmt == "onnx":
        if _missing("onnxruntime"):
            return None
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run([OUTPUT], {name: tensor.numpy() for name, tensor in zip(names, inputs)})[0]
    with torch.inference_mode():
        if fmt == "torchscript":
            return torch.jit.load(str(path)).eval()(*inputs).numpy()
        return torch.export.load(str(path)).module()(*inputs).numpy()


def export_model(
    model: MultiTaskModel, path: str | os.PathLike, fmt: str = "onnx", *, name: str | None = None, companions: Mapping[Path, str] | None = None
) -> ExportReport:
    """Write ``model`` to ``path`` in format ``fmt`` (``FORMATS``), checked against PyTorch; see the module docstring.

    The model itself is left as it was (a copy is exported, on the CPU, in eval mode).
    ``companions``: text files written with the model (its encoders), path -> text: all of
    them and the model, or, when anything fails, none.
    """
    check_format(fmt)
    name = name or type(model).__name__
    if model.export_refusal:
        raise UserError(f"{name} cannot be exported: {model.export_refusal}")
    schema = model.schema
    copied = copy.deepcopy(model).cpu().eval()
    set_split_products(copied, False)
    module = ProbabilityModule(copied).eval()
    specs = input_specs(schema)
    names = [spec.name for spec in specs]
    example = example_inputs(schema, rows=4, seed=0)
    probe = example_inputs(schema, rows=7, seed=1)  # another batch size than the traced one
    with torch.inference_mode():
        expected = module(*probe).numpy()
    path = Path(path)
    companions = dict(companions or {})
    with atomic_outputs([path, *companions]) as (temporary, *others):
        for (target, text), other in zip(companions.items(), others):
            with write_errors(target, other):
                other.write_text(text, encoding="utf-8")
        # Written first by us: the exporters report a file they cannot open in their own words
        # (torch.jit.save: "RuntimeError: [enforce fail at inline_container.cc ...]").
        temporary.write_bytes(b"")
        try:
            with _quiet():
                _run_export(module, example, fmt, temporary, names)
                got = run_exported(temporary, fmt, probe, names)
        except Exception as error:  # noqa: BLE001 - whatever the exporter lacks, the user gets its reason in one line
            # A file that cannot be written is the output's fault, not the exporter's.
            raise write_error(error, path, temporary) or UserError(f"{name} cannot be exported to {fmt}: {_reason(error)}") from None
        difference = None if got is None else float(np.abs(got - expected).max())
        if difference is not None and not difference <= TOLERANCE:
            raise UserError(f"{name} cannot be exported to {fmt}: the exported program's probabilities differ from PyTorch's by {difference:.3g}")
    return ExportReport(path, fmt, tuple(specs), output_spec(schema), difference)
