"""mtrec export, generated from the registry: every model's exported file gives PyTorch's
probabilities for any batch size (ONNX through onnxruntime, TorchScript, torch.export), or the
model states why it cannot be exported; exporter failures are one line."""

from __future__ import annotations

import re

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import SMALL_SCHEMA, small_model

from mtreclib.cli import main
from mtreclib.core.errors import UserError
from mtreclib.core.schema import Bag, BagField, FeatureSchema
from mtreclib.models import MultiTaskModel, create_model, list_models, model_class
from mtreclib.models.mmoe import MMoE
from mtreclib.nn.layers import FieldEmbedding
from mtreclib.serving.export import OUTPUT, ProbabilityModule, export_model, input_specs

# Single-valued fields, numerical features and two multi-valued fields (weighted mean, sum), with
# the relation and the roles that ESMM-style models and PEPNet need.
BAG_SCHEMA = FeatureSchema(
    field_dims=(5, 3, 11),
    numerical_num=4,
    task_names=("click", "conversion"),
    field_roles=("user", "item", None),
    bags=(BagField("tags", 9, "mean", weighted=True), BagField("shops", 4, "sum")),
    task_implies=("", "click"),
)
SCHEMAS = {"fields": SMALL_SCHEMA, "fields_and_bags": BAG_SCHEMA}


def feature_inputs(schema: FeatureSchema, rows: int, seed: int) -> tuple[torch.Tensor, ...]:
    """The exported module's inputs in ``input_specs`` order, drawn here (not by the exporter):
    rows of 0 to 6 values per bag, the first row of each bag empty."""
    generator = torch.Generator().manual_seed(seed)
    tensors = [torch.stack([torch.randint(0, d, (rows,), generator=generator) for d in schema.field_dims], dim=1)]
    tensors.append(torch.randn(rows, schema.numerical_num, generator=generator))
    for bag in schema.bags:
        lengths = torch.randint(0, 7, (rows,), generator=generator)
        lengths[0] = 0
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        values = torch.randint(0, bag.vocab_size, (int(offsets[-1]),), generator=generator)
        tensors += [values, offsets] + ([torch.rand(len(values), generator=generator) + 0.1] if bag.weighted else [])
    return tuple(tensors)


def trained_model(name: str, schema: FeatureSchema) -> MultiTaskModel:
    """A small model whose BatchNorm statistics have moved, in eval mode."""
    torch.manual_seed(0)
    model = small_model(name, schema)
    model.train()
    with torch.no_grad():
        for seed in range(3):
            inputs = feature_inputs(schema, 64, seed)
            model(inputs[0], inputs[1], bags_of(schema, inputs[2:]))
    return model.eval()


def bags_of(schema: FeatureSchema, tensors: tuple[torch.Tensor, ...]) -> tuple[Bag, ...]:
    bags, rest = [], iter(tensors)
    for bag in schema.bags:
        values, offsets = next(rest), next(rest)
        bags.append(Bag(values, offsets, next(rest) if bag.weighted else None))
    return tuple(bags)


def pytorch_probabilities(model: MultiTaskModel, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    """The model as it runs in PyTorch (split products and all), sigmoid of its logits."""
    with torch.inference_mode():
        return torch.sigmoid(model(inputs[0], inputs[1], bags_of(model.schema, inputs[2:]))).numpy()


def assert_refused_as_stated(name: str, model: MultiTaskModel, path, fmt: str) -> None:
    with pytest.raises(UserError, match=re.escape(f"{name} cannot be exported: {model.export_refusal}")):
        export_model(model, path, fmt, name=name)
    assert not path.exists()


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
@pytest.mark.parametrize("name", list_models())
def test_every_model_round_trips_through_onnxruntime_for_any_batch_size(name, schema_name, tmp_path):
    schema = SCHEMAS[schema_name]
    model = trained_model(name, schema)
    path = tmp_path / f"{name}.onnx"
    if model_class(name).export_refusal:
        assert_refused_as_stated(name, model, path, "onnx")
        return
    report = export_model(model, path, "onnx", name=name)
    assert report.max_difference is not None and report.max_difference <= 1e-4
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [spec.name for spec in input_specs(schema)]
    assert [i.name for i in session.get_inputs()] == names and [o.name for o in session.get_outputs()] == [OUTPUT]
    for rows in (1, 5, 300):
        inputs = feature_inputs(schema, rows, seed=rows)
        (got,) = session.run([OUTPUT], {n: t.numpy() for n, t in zip(names, inputs)})
        assert got.shape == (rows, schema.task_num) and got.dtype == np.float32
        np.testing.assert_allclose(got, pytorch_probabilities(model, inputs), rtol=0, atol=1e-5)
    embeddings = [m for m in model.modules() if isinstance(m, FieldEmbedding)]
    assert not model.training and embeddings and all(m.split_products for m in embeddings)  # a copy was exported


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")  # serving TorchScript is the point here
@pytest.mark.parametrize("name", list_models())
def test_every_model_round_trips_through_torchscript(name, tmp_path):
    model = trained_model(name, BAG_SCHEMA)
    path = tmp_path / f"{name}.pt"
    if model_class(name).export_refusal:
        assert_refused_as_stated(name, model, path, "torchscript")
        return
    export_model(model, path, "torchscript", name=name)
    loaded = torch.jit.load(str(path))
    for rows in (1, 9, 300):
        inputs = feature_inputs(BAG_SCHEMA, rows, seed=rows)
        with torch.inference_mode():
            got = loaded(*inputs).numpy()
        np.testing.assert_allclose(got, pytorch_probabilities(model, inputs), rtol=0, atol=1e-5)


def test_a_torch_export_program_round_trips(tmp_path):
    schema = BAG_SCHEMA  # every model goes through torch.export on both schemas on its way to ONNX
    model = trained_model("mmoe", schema)
    export_model(model, tmp_path / "mmoe.pt2", "pt2")
    program = torch.export.load(str(tmp_path / "mmoe.pt2")).module()
    inputs = feature_inputs(schema, 11, seed=3)
    with torch.inference_mode():
        np.testing.assert_allclose(program(*inputs).numpy(), pytorch_probabilities(model, inputs), rtol=0, atol=1e-5)


def test_the_exported_module_leaves_out_inputs_of_no_width():
    schema = FeatureSchema(field_dims=(), numerical_num=0, task_names=("a", "b"), bags=(BagField("tags", 6, "mean"),))
    assert [str(spec) for spec in input_specs(schema)] == ["tags_values (tags_values) int64", "tags_offsets (batch + 1) int64"]
    model = create_model("mmoe", schema, embed_dim=4, bottom_dims=(8,), tower_dims=(4,), expert_num=2).eval()
    values, offsets = torch.tensor([1, 2, 5]), torch.tensor([0, 2, 2, 3])
    with torch.inference_mode():
        expected = torch.sigmoid(model(torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 0), (Bag(values, offsets),)))
        torch.testing.assert_close(ProbabilityModule(model)(values, offsets), expected)


class _Refusing(MMoE):
    export_refusal = "its gates are learned per request (an example)"


class _DataDependent(MMoE):
    def forward(self, categorical, numerical, bags=()):
        logits = super().forward(categorical, numerical, bags)
        if bool(categorical.sum() > 3):  # a branch on the data: no static graph holds it
            return logits * 2
        return logits


def test_a_model_that_states_a_refusal_is_refused_before_any_work(tmp_path):
    model = _Refusing(SMALL_SCHEMA, MMoE.Config(embed_dim=4, expert_num=2))
    assert_refused_as_stated("_Refusing", model, tmp_path / "m.onnx", "onnx")


def test_what_the_exporter_cannot_handle_is_one_line_with_its_reason_and_no_file(tmp_path):
    model = _DataDependent(SMALL_SCHEMA, MMoE.Config(embed_dim=4, expert_num=2)).eval()
    with pytest.raises(UserError) as error:
        export_model(model, tmp_path / "m.onnx", "onnx", name="datadependent")
    message = str(error.value)
    assert message.startswith("datadependent cannot be exported to onnx: ") and "\n" not in message
    assert "data-dependent" in message.lower() or "guard" in message.lower()
    assert list(tmp_path.iterdir()) == []


def test_the_export_command_writes_a_checked_file_of_a_trained_checkpoint(shop_run, tmp_path, capsys):
    for suffix, fmt in ((".onnx", "onnx"), (".pt", "torchscript")):
        output = tmp_path / f"model{suffix}"
        assert main(["export", str(shop_run.run), "--output", str(output)]) == 0
        out = capsys.readouterr().out
        assert "exported mmoe (myshop, epoch" in out and f"({fmt})" in out and "agrees with PyTorch within" in out
        assert "tags_values (tags_values) int64" in out and "probabilities (batch, 3) float32" in out
    assert main(["export", str(shop_run.run), "--output", str(tmp_path / "model.bin")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot tell the format from the suffix" in err and "--format" in err


def test_onnx_without_its_packages_is_refused_with_the_install_line(monkeypatch, tmp_path):
    import mtreclib.serving.export as export

    monkeypatch.setattr(export, "_missing", lambda module: module == "onnxscript")
    with pytest.raises(UserError, match=r"--format onnx needs the package onnxscript: pip install 'mtreclib\[onnx\]'"):
        export_model(trained_model("mmoe", SMALL_SCHEMA), tmp_path / "m.onnx", "onnx")
