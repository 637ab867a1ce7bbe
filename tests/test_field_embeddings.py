"""Per-field embeddings: a field's own ``embedding_dim`` and ``shared_with`` (one table, one
vocabulary for two fields), from the spec's checks through the encoders, both embedding
backends, the models and a trained run's checkpoint and export."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import onnxruntime
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
import torch
from conftest import SMALL_CONFIG, WIDTHS_SCHEMA, random_batch, randomise_batchnorm
from test_export import feature_inputs, pytorch_probabilities, trained_model

from mtreclib.api import load
from mtreclib.cli import main
from mtreclib.core.schema import Bag, BagField, FeatureSchema
from mtreclib.data.cache import read_splits
from mtreclib.data.datasets import load_dataset
from mtreclib.data.spec import DatasetSpec, SpecError
from mtreclib.models import create_model, model_kwargs
from mtreclib.nn.layers import FieldEmbedding
from mtreclib.serving.export import OUTPUT, export_model, input_specs

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = "train: t.parquet\ntest: t.parquet\nlabels: [y]\nnumerical: [n]\n"
SHARING_MISTAKES = {
    "unknown field": (
        "categorical: [item]\nmulti_valued: [{name: history, shared_with: itme}]\n",
        "multi_valued[0].shared_with: 'itme' is not a feature; expected a categorical or multi_valued field: item, history",
    ),
    "a numerical feature": (
        "categorical: [item]\nmulti_valued: [{name: history, shared_with: n}]\n",
        "multi_valued[0].shared_with: 'n' is a numerical feature",
    ),
    "its own table": ("categorical: [{name: item, shared_with: item}]\n", "categorical[0].shared_with: 'item' cannot share its own table"),
    "a chain": (
        "categorical: [item, {name: seen, column: item, shared_with: item}]\nmulti_valued: [{name: history, shared_with: seen}]\n",
        "multi_valued[0].shared_with: 'seen' itself shares 'item''s table; name 'item' (no chains)",
    ),
    "another width": (
        "categorical: [{name: item, embedding_dim: 16}]\nmulti_valued: [{name: history, shared_with: item, embedding_dim: 8}]\n",
        "multi_valued[0].embedding_dim: 8 differs from 'item''s width (16)",
    ),
    "a width on the sharing side": (
        "categorical: [item]\nmulti_valued: [{name: history, shared_with: item, embedding_dim: 8}]\n",
        "multi_valued[0].embedding_dim: 8 differs from 'item''s width (the default --embed-dim)",
    ),
    "another vocabulary rule": (
        "categorical: [{name: item, hash_buckets: 50}]\nmulti_valued: [{name: history, shared_with: item}]\n",
        "multi_valued[0].hash_buckets: None differs from 'item''s 50: a shared table has one vocabulary rule",
    ),
    "a width of zero": ("categorical: [{name: item, embedding_dim: 0}]\n", "categorical[0]: embedding_dim must be at least 1"),
}


@pytest.mark.parametrize("case", list(SHARING_MISTAKES))
def test_a_wrong_sharing_or_width_is_one_line_naming_the_key(tmp_path, case, capsys):
    text, message = SHARING_MISTAKES[case]
    folder = tmp_path / "d"
    folder.mkdir()
    pq.write_table(pa.table({"item": ["a", "b"], "history": [["a"], ["b", "c"]], "y": [0, 1], "n": [1.0, 2.0]}), folder / "t.parquet")
    (folder / "dataset.yaml").write_text(BASE + text)
    with pytest.raises(SpecError) as error:
        DatasetSpec.load(folder / "dataset.yaml")
    assert str(error.value).startswith(str(folder / "dataset.yaml")) and message in str(error.value), str(error.value)
    assert main(["train", "--dataset", "d", "--data-dir", str(tmp_path), "--no-save", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def write_history_data(folder, spec: str) -> None:
    """Items 10, 11 in the rows' item column; 11, 12 (12 in no row's item) in the history lists."""
    folder.mkdir(parents=True)
    rows = {"item": [10, 10, 11, 10], "history": [[11, 12], [12], [], [12, 11, 12]], "y": [0, 1, 0, 1]}
    pq.write_table(pa.table(rows), folder / "t.parquet")
    (folder / "dataset.yaml").write_text("train: t.parquet\ntest: t.parquet\nlabels: [y]\n" + spec)


def test_a_shared_vocabulary_is_built_from_both_columns(tmp_path):
    # Counts over both columns: 12 x4, 10 x3, 11 x3 (ties by value): ids 12 -> 1, 10 -> 2, 11 -> 3.
    write_history_data(tmp_path / "d", "categorical: [{name: item, embedding_dim: 8}]\nmulti_valued: [{name: history, shared_with: item}]\n")
    encoders, tables = read_splits(DatasetSpec.load(tmp_path / "d" / "dataset.yaml"))
    train = tables["train"]
    assert train.categorical[:, 0].tolist() == [2, 2, 3, 2]
    assert train.bags[0].values.tolist() == [3, 1, 1, 1, 3, 1]
    schema = encoders.schema()
    assert schema.field_dims == (4,) and schema.bags[0].vocab_size == 4
    assert schema.table_owners() == (0, 0) and schema.embedding_dims(32) == (8, 8)
    # Without sharing each column has its own vocabulary: the history's 12 is its id 1, 11 its 2.
    write_history_data(tmp_path / "e", "categorical: [item]\nmulti_valued: [history]\n")
    encoders, tables = read_splits(DatasetSpec.load(tmp_path / "e" / "dataset.yaml"))
    assert tables["train"].categorical[:, 0].tolist() == [1, 1, 2, 1] and tables["train"].bags[0].values.tolist() == [2, 1, 1, 1, 2, 1]
    assert not encoders.schema().per_field_embeddings


def test_shared_identity_ids_take_the_largest_of_both_columns(tmp_path):
    write_history_data(tmp_path / "d", "categorical: [{name: item, vocabulary: identity}]\nmulti_valued: [{name: history, vocabulary: identity, shared_with: item}]\n")
    encoders, _ = read_splits(DatasetSpec.load(tmp_path / "d" / "dataset.yaml"))
    assert encoders.schema().field_dims == (14,) and encoders.schema().bags[0].vocab_size == 14  # max 12 + 2


def test_sharing_changes_the_cache_key_and_the_cached_encoders_keep_it(tmp_path):
    write_history_data(tmp_path / "d", "categorical: [item]\nmulti_valued: [history]\n")
    plain = DatasetSpec.load(tmp_path / "d" / "dataset.yaml").fingerprint()
    write_history_data(tmp_path / "e", "categorical: [item]\nmulti_valued: [{name: history, shared_with: item}]\n")
    spec = DatasetSpec.load(tmp_path / "e" / "dataset.yaml")
    assert spec.fingerprint() != plain
    dataset = load_dataset("e", tmp_path)
    again = load_dataset("e", tmp_path)  # from the cache: encoders.json links the two fields again
    assert dataset.schema == again.schema and again.schema.table_owners() == (0, 0)
    assert again.train.bags[0].values.tolist() == [3, 1, 1, 1, 3, 1]


def test_the_schema_refuses_sharing_it_cannot_build():
    base = dict(field_dims=(5, 60), numerical_num=0, field_names=("user", "item"))
    with pytest.raises(ValueError, match="vocabularies of 50 and 60 ids differ"):
        FeatureSchema(**base, bags=(BagField("history", 50, shared_with="item"),))
    with pytest.raises(ValueError, match="name 'item' directly"):
        FeatureSchema(**base, field_shared_with=(None, None), bags=(BagField("seen", 60, shared_with="item"), BagField("h", 60, shared_with="seen")))
    with pytest.raises(ValueError, match="embedding_dim 8 differs from its 4"):
        FeatureSchema(**base, field_embedding_dims=(None, 4), bags=(BagField("history", 60, shared_with="item", embedding_dim=8),))
    schema = FeatureSchema(**base, field_embedding_dims=(None, 4), bags=(BagField("history", 60, shared_with="item"),))
    assert FeatureSchema.from_description(schema.describe()) == schema
    assert "field_embedding_dims" not in FeatureSchema(**base).describe()  # descriptions without them read as before


def embedding_of(schema: FeatureSchema, embed_dim: int = 8, stacked: bool = False) -> FieldEmbedding:
    torch.manual_seed(0)
    return FieldEmbedding.from_schema(schema, embed_dim, stacked=stacked)


def test_fields_keep_their_widths_and_a_shared_table_is_one_parameter_both_fields_train():
    layer = embedding_of(WIDTHS_SCHEMA)
    assert layer.widths == (4, 12, 8, 16, 12, 8) and layer.output_dim == 60
    tables = layer.field_tables
    assert list(tables) == ["field_0", "field_1", "field_2", "bag_0"]  # the history bag has no table of its own
    assert [p.shape[1] for p in tables.parameters()] == [4, 12, 8, 16]
    # Item ids 1, 2 on the rows; history ids 5 and 7 (sum pooling): disjoint rows of the one table.
    categorical = torch.tensor([[0, 1, 0], [1, 2, 2]])
    bags = (Bag(torch.tensor([3]), torch.tensor([0, 1, 1]), torch.tensor([1.0])), Bag(torch.tensor([5, 7, 7]), torch.tensor([0, 1, 3])))
    numerical = torch.zeros(2, 4)
    out = layer.concat(categorical, numerical, bags)  # (B, 60)
    item = tables["field_1"].weight
    torch.testing.assert_close(out[:, 4:16], item[[1, 2]], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 40:52], torch.stack([item[5], item[7] + item[7]]), rtol=0, atol=0)
    out[:, 4:16].sum().backward(retain_graph=True)  # the item field alone
    assert item.grad[[1, 2]].abs().sum() > 0 and item.grad[[5, 7]].abs().sum() == 0
    item.grad = None
    out[:, 40:52].sum().backward()  # the history bag alone, into the item table
    assert item.grad[[5, 7]].abs().sum() > 0 and item.grad[[1, 2]].abs().sum() == 0
    torch.testing.assert_close(item.grad[7], torch.full((12,), 2.0))  # twice in row 1's bag


def test_stacking_unequal_widths_projects_them_when_asked_and_refuses_otherwise():
    batch = random_batch(WIDTHS_SCHEMA, size=5)
    with pytest.raises(ValueError, match="build its FieldEmbedding with stacked=True"):
        embedding_of(WIDTHS_SCHEMA)(batch.categorical, batch.numerical, batch.bags)
    layer = embedding_of(WIDTHS_SCHEMA, stacked=True)
    stacked = layer(batch.categorical, batch.numerical, batch.bags)  # (B, E, D)
    parts = layer.field_list(batch.categorical, batch.numerical, batch.bags)
    assert stacked.shape == (5, 6, 8) and sorted(layer.projections) == ["0", "1", "3", "4"]  # widths 4, 12, 16, 12 projected
    torch.testing.assert_close(stacked[:, 0], parts[0] @ layer.projections["0"].weight.t())
    torch.testing.assert_close(stacked[:, 2], parts[2], rtol=0, atol=0)  # the default width as it is


def test_the_uniform_layout_is_unchanged_without_per_field_keys():
    schema = replace(WIDTHS_SCHEMA, field_embedding_dims=(), bags=tuple(replace(b, embedding_dim=None, shared_with=None) for b in WIDTHS_SCHEMA.bags))
    layer = embedding_of(schema)
    assert layer.uniform and {name for name, _ in layer.named_parameters()} == {"embedding.weight", "bag_embedding.weight", "numerical.weight", "numerical.bias"}
    same_widths = replace(schema, field_embedding_dims=(8, 8, 8))  # every width the default: the same layout
    assert embedding_of(same_widths).uniform


def twins(name: str, schema: FeatureSchema):
    from mtreclib.embeddings import use_torchrec

    torch.manual_seed(0)
    dense = create_model(name, schema, **model_kwargs(name, SMALL_CONFIG))
    randomise_batchnorm(dense)
    return dense, use_torchrec(copy.deepcopy(dense), optimizer="sgd", lr=0.5, device=torch.device("cpu"))


@pytest.mark.parametrize("name", ["mmoe", "pepnet", "metaheac"])
def test_torchrec_tables_with_a_shared_table_give_the_dense_logits(name):
    dense, sparse = twins(name, WIDTHS_SCHEMA)
    (tables,) = [m.tables for m in sparse.modules() if isinstance(m, FieldEmbedding)]
    shared = [c for c in tables.configs if c.name == "field_1"][0]
    assert shared.feature_names == ["field_1", "bag_1"] and shared.embedding_dim == 12 and len(tables.configs) == 4
    batch = random_batch(WIDTHS_SCHEMA, size=64, seed=3)
    dense.eval(), sparse.eval()
    with torch.no_grad():
        torch.testing.assert_close(sparse.logits(batch), dense.logits(batch), rtol=1e-5, atol=1e-6)


def test_an_sgd_step_on_a_shared_torchrec_table_equals_the_dense_step_and_the_state_dicts_load_both_ways():
    dense, sparse = twins("mmoe", WIDTHS_SCHEMA)
    before = dense.embedding.field_tables["field_1"].weight.detach().clone()
    batch = random_batch(WIDTHS_SCHEMA, size=128, seed=4)
    optimizer = torch.optim.SGD(dense.embedding.field_tables.parameters(), lr=0.5)
    torch.manual_seed(2)
    dense.training_loss([batch]).backward()
    optimizer.step()
    torch.manual_seed(2)
    sparse.training_loss([batch]).backward()  # the fused kernel steps in the backward pass
    state = sparse.state_dict()
    assert "embedding.tables.ebc.embedding_bags.field_1.weight" in state and not any("bag_1.weight" in key for key in state)
    loaded = copy.deepcopy(dense)
    loaded.load_state_dict(state)
    for key, value in dense.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=1e-6, atol=1e-7)
    after = dense.embedding.field_tables["field_1"].weight.detach()
    history_rows = torch.unique(batch.bags[1].values)
    assert not torch.equal(after[history_rows], before[history_rows])  # moved by the history bag too
    again = twins("mmoe", WIDTHS_SCHEMA)[1]
    again.load_state_dict(dense.state_dict())  # the dense layout into torchrec tables
    for key, value in again.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=1e-6, atol=1e-7)


def test_torchrec_refuses_a_field_width_its_kernels_cannot_take():
    from mtreclib.core.errors import UserError
    from mtreclib.embeddings import use_torchrec

    schema = replace(WIDTHS_SCHEMA, field_embedding_dims=(6, 12, None))
    model = create_model("mmoe", schema, **model_kwargs("mmoe", SMALL_CONFIG))
    with pytest.raises(UserError, match=r"embedding_dim of field user must be a multiple of 4.*got 6"):
        use_torchrec(model, optimizer="sgd", lr=0.1, device=torch.device("cpu"))


@pytest.mark.parametrize("name", ["mmoe", "pepnet", "metaheac", "home"])
def test_models_of_unequal_widths_export_to_onnx_and_score_as_in_pytorch(name, tmp_path):
    schema = WIDTHS_SCHEMA
    model = trained_model(name, schema)
    path = tmp_path / f"{name}.onnx"
    report = export_model(model, path, "onnx", name=name)
    assert report.max_difference is not None and report.max_difference <= 1e-4
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [spec.name for spec in input_specs(schema)]
    inputs = feature_inputs(schema, 7, seed=1)
    (got,) = session.run([OUTPUT], {n: t.numpy() for n, t in zip(names, inputs)})
    np.testing.assert_allclose(got, pytorch_probabilities(model, inputs), rtol=0, atol=1e-5)


HISTORY_SPEC = """\
format: parquet
train: train.parquet
test: test.parquet
categorical: [user_id, {name: item_id, embedding_dim: 12}, {name: city, embedding_dim: 4}]
multi_valued:
  - {name: history, shared_with: item_id, pooling: mean}
numerical: [{name: price, fill: 0}]
labels: [click, buy]
implies: {buy: click}
"""


def history_rows(n: int, seed: int) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    click = rng.random(n) < 0.4
    return {
        "user_id": [f"u{x}" for x in rng.integers(0, 20, n)],
        "item_id": [int(x) for x in rng.integers(100, 140, n)],
        "city": [["Paris", "Lyon", "Nice"][x] for x in rng.integers(0, 3, n)],
        "history": [[int(x) for x in rng.integers(100, 150, rng.integers(0, 6))] for _ in range(n)],
        "price": [float(p) for p in rng.gamma(2.0, 10.0, n)],
        "click": click.astype(int).tolist(),
        "buy": (click & (rng.random(n) < 0.3)).astype(int).tolist(),
    }


def test_a_run_with_per_field_widths_trains_evaluates_predicts_and_exports_from_its_checkpoint(tmp_path, capsys):
    folder = tmp_path / "data" / "hist"
    folder.mkdir(parents=True)
    pq.write_table(pa.table(history_rows(300, 1)), folder / "train.parquet")
    pq.write_table(pa.table(history_rows(80, 2)), folder / "test.parquet")
    (folder / "dataset.yaml").write_text(HISTORY_SPEC)
    status = main(
        ["train", "--model", "mmoe", "--dataset", "hist", "--data-dir", str(tmp_path / "data"), "--save-dir", str(tmp_path / "runs"),
         "--epochs", "1", "--embed-dim", "8", "--expert-num", "2", "--bottom-dims", "16,8", "--tower-dims", "4", "--batch-size", "64",
         "--no-progress"]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert main(["inspect", "hist", "--data-dir", str(tmp_path / "data")]) == 0  # the sharing field's vocabulary is its table's
    assert "history" in capsys.readouterr().out
    run = tmp_path / "runs" / "hist_mmoe" / "run-1"
    model = load(run)  # the checkpoint rebuilds the widths and the shared table from its schema
    assert model.module.embedding.widths == (8, 12, 4, 12, 8) and list(model.module.embedding.field_tables) == ["field_0", "field_1", "field_2"]
    rows = pa.table(history_rows(20, 3)).drop_columns(["click", "buy"])
    probabilities = model.predict(rows)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    scores = tmp_path / "scores.csv"
    pq.write_table(rows, tmp_path / "rows.parquet")
    assert main(["predict", str(run), "--input", str(tmp_path / "rows.parquet"), "--output", str(scores), "--no-progress"]) == 0
    written = pa.csv.read_csv(scores)
    np.testing.assert_allclose(np.stack([written[t].to_numpy() for t in ("click", "buy")], axis=1), np.asarray(probabilities), rtol=0, atol=1e-6)
    assert main(["export", str(run), "--output", str(tmp_path / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert "agrees with PyTorch within" in out and "history_values" in out


def _sharded_rank(rank: int, out, port: int, initial: dict) -> None:
    """One of two processes: the shared-table model on table-wise sharded torchrec tables, its logits."""
    import os
    from datetime import timedelta

    from mtreclib.config.experiment import TrainConfig
    from mtreclib.core import distributed
    from mtreclib.core.distributed import place_from_environment
    from mtreclib.embeddings import use_torchrec
    from mtreclib.embeddings.sharding import shard_tables
    from mtreclib.nn.layers import deferred_tables

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cpu = torch.device("cpu")
    with distributed.process_group(place_from_environment(), cpu, timeout=timedelta(seconds=120)):
        with deferred_tables():
            model = create_model("mmoe", WIDTHS_SCHEMA, **model_kwargs("mmoe", SMALL_CONFIG))
        use_torchrec(model, optimizer="sgd", lr=0.5, device=cpu, sharded=True)
        plan = shard_tables(model, TrainConfig(embedding_backend="torchrec", sharding="table_wise"), cpu)
        model.load_state_dict(initial)  # whole tables: each process copies in its shards
        model.eval()
        with torch.no_grad():
            logits = model.logits(random_batch(WIDTHS_SCHEMA, size=32, seed=5))
        torch.save({"plan": plan, "logits": logits}, out / f"rank{rank}.pt")


def test_a_shared_table_sharded_across_two_processes_gives_the_one_process_logits(tmp_path):
    import torch.multiprocessing as mp
    from conftest import free_port

    torch.manual_seed(0)
    dense = create_model("mmoe", WIDTHS_SCHEMA, **model_kwargs("mmoe", SMALL_CONFIG))
    randomise_batchnorm(dense)
    mp.spawn(_sharded_rank, args=(tmp_path, free_port(), dense.state_dict()), nprocs=2)
    dense.eval()
    with torch.no_grad():
        expected = dense.logits(random_batch(WIDTHS_SCHEMA, size=32, seed=5))
    for rank in range(2):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        torch.testing.assert_close(saved["logits"], expected, rtol=1e-5, atol=1e-6)
    assert sorted(entry["table"] for entry in saved["plan"]) == ["bag_0", "field_0", "field_1", "field_2"]
