"""The torchrec embedding backend in one process: the same model as the dense backend with the
same weights, its fused optimizers' update rules computed by hand, every strategy on it, and a
torchrec run's checkpoint read by the one-process commands."""

from __future__ import annotations

import copy
import json
import sys

import pytest
import torch
from conftest import BAG_SCHEMA, SMALL_CONFIG, SMALL_SCHEMA, random_batch, randomise_batchnorm, small_experiment

from mtreclib.config.resolve import with_changes
from mtreclib.core.errors import UserError
from mtreclib.core.schema import BagField, FeatureSchema
from mtreclib.embeddings import use_torchrec
from mtreclib.models import create_model, list_models, model_kwargs
from mtreclib.mto import GradientStrategy, create_strategy, list_strategies, strategy_class
from mtreclib.nn.layers import FieldEmbedding, sparse_tables
from mtreclib.runs import checkpoint
from mtreclib.training.experiment import run_experiment

CPU = torch.device("cpu")
# Every kind of field at once: single-valued with roles, a weighted mean bag, a plain mean bag, a
# sum bag, numerical features; three tasks.
MIXED_SCHEMA = FeatureSchema(
    field_dims=(5, 60, 3, 7),
    numerical_num=4,
    task_names=("click", "cart", "buy"),
    field_roles=("user", "item", None, "user"),
    bags=(
        BagField("tags", 30, "mean", weighted=True, role="item"),
        BagField("cats", 9, "mean", role="item"),
        BagField("history", 200, "sum", role="user"),
    ),
    task_implies=("", "click", "click"),
)


# Tiny models: one thread each (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def twins(name: str, schema: FeatureSchema, optimizer: str = "sgd", lr: float = 0.1, **overrides):
    """Model ``name`` on the dense backend and the same model (weights copied in) on torchrec."""
    torch.manual_seed(0)
    dense = create_model(name, schema, **model_kwargs(name, {**SMALL_CONFIG, **overrides}))
    randomise_batchnorm(dense)
    sparse = use_torchrec(copy.deepcopy(dense), optimizer=optimizer, lr=lr, device=CPU)
    return dense, sparse


@pytest.fixture(params=[True, False], ids=["split-products", "concatenated"])
def split_products(request):
    """Both ways ``FlatFields`` reads the tables: one lookup shared by the split products, or whole."""
    saved = FieldEmbedding.split_products, FieldEmbedding.min_split_macs
    FieldEmbedding.split_products, FieldEmbedding.min_split_macs = request.param, 0
    yield request.param
    FieldEmbedding.split_products, FieldEmbedding.min_split_macs = saved


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("schema", [SMALL_SCHEMA, MIXED_SCHEMA], ids=["aliexpress-like", "mixed"])
def test_torchrec_tables_with_the_dense_weights_give_the_dense_logits_and_losses(name, schema, split_products):
    dense, sparse = twins(name, schema)
    embeddings = [m for m in sparse.modules() if isinstance(m, FieldEmbedding)]
    assert embeddings and all(not hasattr(m, "embedding") and not hasattr(m, "bag_embedding") for m in embeddings)  # no dense table left
    assert len(sparse_tables(sparse)) == len(embeddings) and not sparse_tables(dense)
    batch = random_batch(schema, size=96, seed=3)
    dense.eval(), sparse.eval()
    with torch.no_grad():
        torch.testing.assert_close(sparse.logits(batch), dense.logits(batch), rtol=1e-5, atol=1e-6)
    dense.train(), sparse.train()
    torch.manual_seed(1)
    expected = dense.task_losses([batch] * dense.batches_per_step).tasks
    torch.manual_seed(1)
    got = sparse.task_losses([batch] * sparse.batches_per_step).tasks
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def _dense_tables(model) -> list[torch.Tensor]:
    return [p for n, p in model.named_parameters() if n.endswith(("embedding.embedding.weight", "embedding.bag_embedding.weight"))]


@pytest.mark.parametrize("schema", [SMALL_SCHEMA, MIXED_SCHEMA], ids=["aliexpress-like", "mixed"])
def test_sgd_on_torchrec_equals_dense_sgd_on_the_rows_a_batch_touched(schema, split_products):
    dense, sparse = twins("mmoe", schema, optimizer="sgd", lr=0.5)
    before = copy.deepcopy(dense.state_dict())
    batch = random_batch(schema, size=128, seed=4)
    tables = _dense_tables(dense)
    optimizer = torch.optim.SGD(tables, lr=0.5)
    torch.manual_seed(2)
    dense.training_loss([batch]).backward()
    optimizer.step()
    torch.manual_seed(2)
    sparse.training_loss([batch]).backward()  # the fused kernel steps in the backward pass
    loaded = copy.deepcopy(dense)
    loaded.load_state_dict(sparse.state_dict())  # torchrec's per-field tables into the dense layout
    moved = 0
    for key in ("embedding.embedding.weight", "embedding.bag_embedding.weight")[: 1 + bool(schema.bags)]:
        torch.testing.assert_close(loaded.state_dict()[key], dense.state_dict()[key], rtol=1e-6, atol=1e-7)
        moved += int((dense.state_dict()[key] != before[key]).any(1).sum())
    assert moved > 0


@pytest.mark.parametrize("optimizer", ["rowwise_adagrad", "adagrad", "sgd"])
def test_each_fused_optimizer_follows_its_update_rule(optimizer):
    """Two steps by hand of a loss sum_b c_b . out_b over two tables: row r's gradient g_r is the sum
    of c_b over the bags holding r (times the value's weight). sgd: w_r -= lr g_r; adagrad:
    G_r += g_r^2 (per element); rowwise_adagrad: G_r += mean(g_r^2) (one per row); both
    w_r -= lr g_r / (sqrt(G_r) + eps), eps = 1e-8; untouched rows stay."""
    from mtreclib.embeddings.optimizers import fused_optimizer
    from mtreclib.embeddings.tables import TorchRecTables

    torch.manual_seed(0)
    lr, dim = 0.3, 4
    tables = TorchRecTables(["a", "b"], [5, 4], dim, [0.5, 0.5], weighted=True, optimizer=fused_optimizer(optimizer, CPU), lr=lr, device=CPU)
    values = [torch.tensor([0, 3, 3]), torch.tensor([1, 2, 1, 1])]
    lengths = [torch.tensor([1, 2]), torch.tensor([3, 1])]
    weights = [torch.ones(3), torch.tensor([0.5, 2.0, 1.0, 3.0])]
    c = torch.randn(2, 2 * dim)
    expected = [w.clone().double() for w in tables.field_weights()]
    state = [torch.zeros(5, dim, dtype=torch.float64), torch.zeros(4, dim, dtype=torch.float64)]
    for _ in range(2):
        out = tables(values, lengths, weights, 2)  # (2, 2 * D)
        for t in range(2):
            rows = torch.repeat_interleave(torch.arange(2), lengths[t])
            grad = torch.zeros_like(expected[t]).index_add_(0, values[t], weights[t].double().unsqueeze(1) * c[rows, t * dim : (t + 1) * dim].double())
            touched = grad.abs().sum(1) > 0
            if optimizer == "sgd":
                step = lr * grad
            else:
                state[t] += grad.square() if optimizer == "adagrad" else grad.square().mean(1, keepdim=True).expand_as(grad) * touched.unsqueeze(1)
                step = lr * grad / (state[t].sqrt() + 1e-8)
            expected[t][touched] -= step[touched]
        (out * c).sum().backward()
        for got, want in zip(tables.field_weights(), expected):
            torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    assert torch.equal(tables.field_weights()[0][[1, 2, 4]], expected[0][[1, 2, 4]].float())  # never looked up


@pytest.mark.parametrize("name", list_strategies())
def test_every_strategy_trains_on_torchrec_tables(name):
    from test_mto_strategies import mean_loss, train

    torch.manual_seed(0)
    model = create_model("mmoe", SMALL_SCHEMA, **model_kwargs("mmoe", SMALL_CONFIG))
    use_torchrec(model, optimizer="rowwise_adagrad", lr=0.05, device=CPU)
    tables = sparse_tables(model)[0]
    before_tables = [w.clone() for w in tables.field_weights()]
    before = mean_loss(model)
    settings = {"task_weights": (1.0, 0.5)} if name == "fixed" else {}
    strategy = create_strategy(name, model.task_num, **settings)
    train(model, strategy)
    assert mean_loss(model) < before
    assert all(not torch.equal(a, b) for a, b in zip(tables.field_weights(), before_tables))
    for parameter_name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name


@pytest.mark.parametrize("name", [n for n in list_strategies() if issubclass(strategy_class(n), GradientStrategy)])
def test_a_gradient_method_balances_the_dense_parameters_and_moves_the_tables_by_its_weighted_loss(name):
    """One step with SGD tables, against a dense twin whose tables are frozen (the method then
    decides on the same dense parameters): every dense gradient equals the twin's, and the
    tables move by -lr times the gradient of sum_t w_t L_t with the step's task weights."""
    from mtreclib.mto import StepContext

    dense, sparse = twins("mmoe", SMALL_SCHEMA, optimizer="sgd", lr=1.0)
    table = dense.embedding.embedding.weight
    table.requires_grad_(False)
    batch = random_batch(SMALL_SCHEMA, size=64, seed=6)
    strategies = {}
    for label, model in (("dense", dense), ("sparse", sparse)):
        strategy = strategies[label] = create_strategy(name, model.task_num)
        strategy.attach(model)
        torch.manual_seed(3)
        strategy.backward(model.task_losses([batch]), StepContext(model))
    grads = {n: p.grad for n, p in dense.named_parameters() if p.requires_grad}
    checked = 0
    for n, p in sparse.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6)
            checked += 1
    assert checked == len(grads)
    assert strategies["sparse"].task_weights() == pytest.approx(strategies["dense"].task_weights(), rel=1e-4)
    weights = torch.tensor(strategies["dense"].task_weights()) / dense.task_num
    table.requires_grad_(True)
    torch.manual_seed(3)
    total = (weights * dense.task_losses([batch]).tasks).sum()
    expected = table.detach() - torch.autograd.grad(total, table)[0]
    loaded = copy.deepcopy(dense)
    loaded.load_state_dict(sparse.state_dict())
    assert not torch.equal(loaded.embedding.embedding.weight, table.detach())
    torch.testing.assert_close(loaded.embedding.embedding.weight, expected, rtol=1e-4, atol=1e-6)


def test_torchrec_state_dicts_load_into_dense_models_and_back():
    dense, sparse = twins("ple", BAG_SCHEMA)
    state = sparse.state_dict()
    assert any(".tables.ebc.embedding_bags.bag_1.weight" in key for key in state)
    fresh = create_model("ple", BAG_SCHEMA, **model_kwargs("ple", SMALL_CONFIG))
    fresh.load_state_dict(state)
    for key, value in dense.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    other = use_torchrec(create_model("ple", BAG_SCHEMA, **model_kwargs("ple", SMALL_CONFIG)), optimizer="sgd", lr=0.1, device=CPU)
    other.load_state_dict(dense.state_dict())
    for key, value in state.items():
        assert torch.equal(other.state_dict()[key], value), key


def test_adam_tables_on_cpu_and_a_missing_install_are_one_line_errors(monkeypatch):
    model = create_model("mmoe", SMALL_SCHEMA, **model_kwargs("mmoe", SMALL_CONFIG))
    with pytest.raises(UserError, match=r"adam: fbgemm runs it only on cuda; on cpu choose one of rowwise_adagrad, adagrad, sgd"):
        use_torchrec(model, optimizer="adam", lr=0.1, device=CPU)
    odd = create_model("mmoe", SMALL_SCHEMA, **model_kwargs("mmoe", {**SMALL_CONFIG, "embed_dim": 6}))
    with pytest.raises(UserError, match=r"embed_dim \(--embed-dim\) must be a multiple of 4 on the torchrec backend \(fbgemm's kernels\), got 6"):
        use_torchrec(odd, optimizer="sgd", lr=0.1, device=CPU)
    monkeypatch.setitem(sys.modules, "torchrec", None)  # as if not installed: import raises ImportError
    with pytest.raises(UserError, match=r"needs TorchRec and fbgemm .*pip install --no-deps torchrec==1.8.0") as error:
        use_torchrec(model, optimizer="sgd", lr=0.1, device=CPU)
    assert "\n" not in str(error.value)


def test_a_torchrec_run_resumed_after_an_epoch_ends_bitwise_equal(tiny_synthetic, tmp_path):
    settings = dict(epochs=3, patience=0, dropout=0.2, lr=5e-3, embedding_backend="torchrec")  # patience 0: the last epoch is kept
    whole = run_experiment(small_experiment("mmoe", save_dir=str(tmp_path / "a"), save=True, **settings), dataset=tiny_synthetic, announce=False)
    first = small_experiment("mmoe", save_dir=str(tmp_path / "b"), save=True, **{**settings, "epochs": 1})
    run_experiment(first, dataset=tiny_synthetic, announce=False)
    resumed = run_experiment(with_changes(first, epochs=3, resume="last"), dataset=tiny_synthetic, announce=False)
    assert resumed.tasks == whole.tasks and resumed.steps == whole.steps
    a = checkpoint.load(whole.checkpoint, "model")["state_dict"]
    b = checkpoint.load(resumed.checkpoint, "model")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    last = checkpoint.load(tmp_path / "b" / "synthetic_mmoe" / "run-1" / "last.pt", "resume")
    (rank,) = last["fused_optimizers"]  # one process: one entry, a state per FieldEmbedding's tables
    states = [state for entry in rank[0].values() for state in entry.values()]
    assert len(rank) == 1 and states and all(state.dim() == 1 and state.abs().sum() > 0 for state in states)  # one accumulator a row


def test_mtrec_evaluate_and_export_read_a_torchrec_run_in_one_process(tmp_path):
    from mtreclib.cli import main

    results = tmp_path / "results.json"
    common = ["--dataset", "synthetic", "--embed-dim", "8", "--bottom-dims", "16,8", "--tower-dims", "8", "--expert-num", "2"]
    code = main(["train", "--model", "mmoe", *common, "--epochs", "1", "--embedding-backend", "torchrec",
                 "--save-dir", str(tmp_path / "runs"), "--results", str(results), "--no-progress"])
    assert code in (0, None)
    record = json.loads(results.read_text())
    evaluated = tmp_path / "evaluated.json"
    code = main(["evaluate", record["checkpoint"], "--results", str(evaluated)])
    assert code in (0, None)
    again = json.loads(evaluated.read_text())
    for task, metrics in record["tasks"].items():
        assert again["tasks"][task]["auc"] == pytest.approx(metrics["auc"], abs=1e-6)
    # export: the same inputs as a dense model's (the checkpoint loads into one), checked by onnxruntime
    onnx = tmp_path / "model.onnx"
    assert main(["export", record["checkpoint"], "--output", str(onnx)]) == 0
    import onnxruntime

    names = [i.name for i in onnxruntime.InferenceSession(str(onnx)).get_inputs()]
    assert names == ["categorical", "numerical"]


def test_bad_torchrec_settings_stop_before_any_data_is_read(tmp_path, capsys):
    from mtreclib.cli import main

    missing = ["--dataset", str(tmp_path / "nowhere.yaml"), "--no-progress", "--save-dir", str(tmp_path)]
    assert main(["train", *missing, "--embedding-backend", "torchrec", "--embed-dim", "6"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mtrec: error: embed_dim (--embed-dim) must be a multiple of 4 on the torchrec backend (fbgemm's kernels), got 6"
    )
    assert main(["train", *missing, "--embedding-backend", "torchrec", "--embedding-optimizer", "adam"]) == 2
    assert "fbgemm runs it only on cuda" in capsys.readouterr().err
    assert main(["train", *missing, "--embedding-backend", "torchrec"]) == 2
    assert "nowhere.yaml" in capsys.readouterr().err  # the settings pass: the data is what fails
