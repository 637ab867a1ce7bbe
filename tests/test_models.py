"""Every registered model, tested through the registry: a new model is covered when registered."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import BAG_SCHEMA, SMALL_SCHEMA, WIDTHS_SCHEMA, random_batch, small_model

from mtreclib.core.errors import UserError
from mtreclib.core.schema import FeatureSchema
from mtreclib.models import MultiTaskModel, create_model, list_models, model_class, multitask_bce

MODELS = list_models()


def test_registry_has_the_seven_models_of_the_original():
    assert MODELS[:7] == ["singletask", "sharedbottom", "omoe", "mmoe", "ple", "aitm", "metaheac"]


def test_unknown_model_is_a_user_error_listing_known_ones():
    with pytest.raises(UserError) as error:
        create_model("mmeo", SMALL_SCHEMA)
    assert "mmeo" in str(error.value) and all(name in str(error.value) for name in MODELS)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("task_num", [1, 2, 3])
def test_one_finite_logit_per_task(name, task_num):
    # A chain of relations (b implies a, c implies b), which ESMM-style models need and others ignore.
    schema = replace(SMALL_SCHEMA, task_names=("a", "b", "c")[:task_num], task_implies=("", "a", "b")[:task_num])
    if task_num < model_class(name).min_tasks:
        with pytest.raises(ValueError, match="at least 2 tasks"):
            small_model(name, schema)
        return
    model = small_model(name, schema)
    assert isinstance(model, MultiTaskModel)
    batch = random_batch(schema, size=32)
    model.eval()
    logits = model(batch.categorical, batch.numerical)
    assert logits.shape == (32, task_num)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", MODELS)
def test_logits_are_not_probabilities(name):
    """Models end without a sigmoid: logits leave [0, 1] once the model has learned anything."""
    torch.manual_seed(0)
    model = small_model(name)
    batch = random_batch(size=256)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(40):
        loss = model.training_loss([batch, batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    logits = model(batch.categorical, batch.numerical)
    assert (logits < 0).any() or (logits > 1).any()


# Per-field widths and a shared table: every model trains on unequal widths (each documents how).
SCHEMAS = {"aliexpress-like": SMALL_SCHEMA, "bags, no numerical, 3 tasks": BAG_SCHEMA, "per-field widths, a shared table": WIDTHS_SCHEMA}


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_a_gradient_from_the_training_loss(name, schema):
    """Catches dead gates, unused experts and parameters DDP would choke on (through each model's own step)."""
    torch.manual_seed(0)
    model = small_model(name, schema)
    model.train()
    batches = [random_batch(schema, size=64, seed=s) for s in range(model.batches_per_step)]
    model.training_loss(batches).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name}.{parameter_name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"{name}.{parameter_name} got a zero gradient"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_a_few_steps_lower_the_loss(name, schema):
    torch.manual_seed(0)
    model = small_model(name, schema)
    batch = random_batch(schema, size=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_now() -> float:
        model.eval()
        with torch.no_grad():
            return multitask_bce(model.logits(batch), batch.labels).item()

    before = loss_now()
    for _ in range(30):
        model.train()
        loss = model.training_loss([batch] * model.batches_per_step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_now() < before - 0.05


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_model_and_steps(name):
    def train_once() -> torch.Tensor:
        torch.manual_seed(3)
        model = small_model(name, dropout=0.2)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for seed in range(4):
            loss = model.training_loss([random_batch(size=64, seed=seed)] * model.batches_per_step)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        batch = random_batch(size=16, seed=9)
        return model(batch.categorical, batch.numerical)

    assert torch.equal(train_once(), train_once())


@pytest.mark.parametrize("name", MODELS)
def test_default_configuration_is_the_originals(name):
    """embed 128, bottom (512, 256), towers (128, 64), dropout 0.2, 8 experts."""
    model = create_model(name, SMALL_SCHEMA)
    sizes = {tuple(p.shape) for p in model.parameters()}
    assert (sum(SMALL_SCHEMA.field_dims), 128) in sizes  # the shared embedding table
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.2}


def _mlp(input_dim: int, dims: tuple[int, ...], output_layer: bool = False) -> int:
    """Parameters of the original's MultiLayerPerceptron: Linear + BatchNorm per block."""
    total = 0
    for dim in dims:
        total += input_dim * dim + dim + 2 * dim
        input_dim = dim
    return total + (input_dim + 1 if output_layer else 0)


def _linear(i: int, o: int) -> int:
    return i * o + o


@pytest.mark.parametrize("task_num", [2, 3])
def test_parameter_counts_match_the_original_architecture(task_num):
    """Counted from the original MTReclib's modules (embed 128, experts 8, critics 5)."""
    schema = FeatureSchema((5, 3, 11, 2), 6, ("a", "b", "c")[:task_num])
    t, d, e, c = task_num, 128, 8, 5
    emb_out = (schema.field_num + 1) * d
    embedding = sum(schema.field_dims) * d + _linear(schema.numerical_num, d)
    bottom = _mlp(emb_out, (512, 256))
    tower = _mlp(256, (128, 64), output_layer=True)
    k = s = e // 2
    expected = {
        "singletask": t * (embedding + bottom + tower),
        "sharedbottom": embedding + bottom + t * tower,
        "omoe": embedding + e * bottom + _linear(emb_out, e) + t * tower,
        "mmoe": embedding + e * bottom + t * _linear(emb_out, e) + t * tower,
        "ple": embedding
        + (s + t * k) * _mlp(emb_out, (512,)) + t * _linear(emb_out, k + s) + _linear(emb_out, t * k + s)
        + (s + t * k) * _mlp(512, (256,)) + t * _linear(512, k + s)
        + t * tower,
        "aitm": embedding + t * bottom + (t - 1) * _linear(256, 256) + 3 * _linear(256, 256) + t * tower,
        "metaheac": embedding + t * d + e * bottom + c * tower + _linear(2 * d, e) + _linear(2 * d, c),
    }
    for name, count in expected.items():
        model = create_model(name, schema)
        assert sum(p.numel() for p in model.parameters()) == count, name


@pytest.mark.parametrize("name", MODELS)
def test_shared_parameters_are_those_two_tasks_reach_and_tower_banks_are_not(name):
    """What gradient methods balance: found by the model itself, right for small models too."""
    torch.manual_seed(0)
    model = small_model(name)
    shared = {id(p) for p in model.shared_parameters()}
    named = dict(model.named_parameters())
    if name == "singletask":
        assert not shared  # nothing is shared between independent networks
        return
    embedding = [p for n, p in named.items() if n.startswith("embedding.") or ".embedding." in n]
    if name not in ("stem",):
        assert any(id(p) in shared for p in embedding), f"{name}: its shared embedding is not found shared"
    if name in ("sharedbottom", "omoe", "mmoe", "ple", "cgc", "dselectk"):
        # Each task's tower reads only its own input (in ESMM or AITM a task's logit also reads
        # the towers or bottoms of the tasks before it, which makes those shared).
        towers = [p for n, p in named.items() if n.startswith("towers.")]
        assert towers and not any(id(p) in shared for p in towers), f"{name}: a bank of per-task towers is found shared"
