"""The fast paths against the straightforward computation, for every model.

``FlatFields.linear`` multiplies the concatenated field embeddings field by field (whole-vocabulary
projections gathered with ``embedding_bag`` for small fields, one dense product for the rest).
Turning ``split_products`` off forms the concatenation and multiplies it, as the original does.
Both must agree up to float rounding, in outputs and in every parameter's gradient.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import BAG_SCHEMA, random_batch, randomise_batchnorm, small_model
from torch import nn

from mtreclib.core.schema import FeatureSchema
from mtreclib.models import list_models
from mtreclib.nn.dropout import dropout_mask, relu_dropout
from mtreclib.nn.layers import MLP, FieldEmbedding, Gate, MLPBank, set_split_products
from mtreclib.nn.products import FlatFields

# Distinct ids per batch of 64 on both sides of the projection threshold (0.75 * 64 = 48).
MIXED_SCHEMA = FeatureSchema(
    field_dims=(3, 40, 200, 7, 1000, 2), numerical_num=5, task_implies=("", "click"), field_roles=("user", None, "item", None, "author", None)
)
BATCH = 64

# ratio -> which fields are projected at batch 64: none, the small ones, all of them.
RATIOS = {"dense_only": 0.0, "mixed": 0.75, "all_projected": 1e9}


def _pair(name: str, ratio: float, dtype: torch.dtype = torch.float64) -> tuple[nn.Module, nn.Module]:
    """Model ``name`` with split products at ``ratio``, and a copy computing straightforwardly."""
    torch.manual_seed(0)
    fast = small_model(name, MIXED_SCHEMA, dropout=0.2).to(dtype)
    randomise_batchnorm(fast)
    for module in fast.modules():
        if isinstance(module, FieldEmbedding):
            module.projection_ratio = ratio
            module.min_split_macs = 0  # split even these small products
    plain = copy.deepcopy(fast)
    set_split_products(plain, False)
    return fast, plain


def _batches(n: int, dtype: torch.dtype) -> list:
    batches = [random_batch(MIXED_SCHEMA, size=BATCH, seed=s) for s in range(n)]
    return [b._replace(numerical=b.numerical.to(dtype)) for b in batches]


def _projected_fields(model: nn.Module, batch) -> set[int]:
    layer = next(m for m in model.modules() if isinstance(m, FieldEmbedding))
    return set(layer.flat(batch.categorical, batch.numerical)._plan_split().projected)


def test_ratios_cover_dense_mixed_and_projected_fields():
    fields = set(range(MIXED_SCHEMA.field_num))
    (batch,) = _batches(1, torch.float64)
    projected = {label: _projected_fields(_pair("mmoe", ratio)[0], batch) for label, ratio in RATIOS.items()}
    assert projected["dense_only"] == set()
    assert set() < projected["mixed"] < fields
    assert projected["all_projected"] == fields


@pytest.mark.parametrize("ratio", RATIOS.values(), ids=RATIOS.keys())
@pytest.mark.parametrize("name", list_models())
def test_training_loss_and_gradients_equal_the_straightforward_computation(name, ratio):
    """Training mode with dropout: the same masks are drawn in the same order on both paths."""
    fast, plain = _pair(name, ratio)
    batches = _batches(fast.batches_per_step, torch.float64)
    losses = []
    for model in (fast, plain):
        model.train()
        torch.manual_seed(1)
        loss = model.training_loss(batches)
        loss.backward()
        losses.append(loss)
    # The losses are computed in the logits' float64 (task_bce), so the two paths agree to rounding.
    assert losses[0].dtype == torch.float64
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=1e-14)
    plain_parameters = dict(plain.named_parameters())
    for parameter_name, parameter in fast.named_parameters():
        expected = plain_parameters[parameter_name].grad
        assert parameter.grad is not None and expected is not None, parameter_name
        torch.testing.assert_close(parameter.grad, expected, rtol=1e-9, atol=1e-12, msg=parameter_name)
    # BatchNorm running statistics follow the same batches.
    plain_buffers = dict(plain.named_buffers())
    for buffer_name, buffer in fast.named_buffers():
        torch.testing.assert_close(buffer, plain_buffers[buffer_name], rtol=1e-10, atol=1e-12, msg=buffer_name)


@pytest.mark.parametrize("ratio", RATIOS.values(), ids=RATIOS.keys())
@pytest.mark.parametrize("name", list_models())
def test_logits_and_their_gradients_equal_the_straightforward_computation(name, ratio):
    """In double precision throughout (no float32 loss), so agreement is to rounding."""
    fast, plain = _pair(name, ratio)
    (batch,) = _batches(1, torch.float64)
    upstream = torch.randn(BATCH, fast.task_num, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    outputs = []
    for model in (fast, plain):
        model.train()
        torch.manual_seed(1)
        logits = model(batch.categorical, batch.numerical)
        (logits * upstream).sum().backward()
        outputs.append(logits)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-10)
    plain_parameters = dict(plain.named_parameters())
    for parameter_name, parameter in fast.named_parameters():
        torch.testing.assert_close(parameter.grad, plain_parameters[parameter_name].grad, rtol=1e-9, atol=1e-11, msg=parameter_name)
    for model in (fast, plain):
        model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(fast(batch.categorical, batch.numerical), plain(batch.categorical, batch.numerical), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ratio", RATIOS.values(), ids=RATIOS.keys())
def test_flat_fields_linear_equals_the_dense_product(ratio):
    torch.manual_seed(0)
    layer = FieldEmbedding(MIXED_SCHEMA.field_dims, MIXED_SCHEMA.numerical_num, embed_dim=6).double()
    layer.projection_ratio = ratio
    layer.min_split_macs = 0
    batch = _batches(1, torch.float64)[0]
    weight = torch.randn(layer.output_dim, 9, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(9, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(BATCH, 9, dtype=torch.float64)

    def run(split: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        layer.split_products = split
        inputs = [weight, bias, layer.embedding.weight, layer.numerical.weight, layer.numerical.bias]
        out = layer.flat(batch.categorical, batch.numerical).linear(weight, bias)
        grads = torch.autograd.grad((out * upstream).sum(), inputs)
        return out, list(grads)

    fast_out, fast_grads = run(True)
    plain_out, plain_grads = run(False)
    expected = layer(batch.categorical, batch.numerical).flatten(1) @ weight + bias
    torch.testing.assert_close(plain_out, expected)
    torch.testing.assert_close(fast_out, expected, rtol=1e-12, atol=1e-12)
    for got, want in zip(fast_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_flat_fields_linear_without_numerical_features_and_without_bias():
    torch.manual_seed(0)
    layer = FieldEmbedding((4, 90, 3), numerical_num=0, embed_dim=5).double()
    layer.min_split_macs = 0
    categorical = torch.stack([torch.randint(0, d, (32,)) for d in layer.field_dims], dim=1)
    numerical = torch.empty(32, 0, dtype=torch.float64)
    weight = torch.randn(layer.output_dim, 7, dtype=torch.float64)
    out = layer.flat(categorical, numerical).linear(weight)
    expected = layer(categorical, numerical).flatten(1) @ weight
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_bank_mlp_and_gate_read_flat_fields_as_they_read_the_dense_tensor():
    """The layers' own products (bank of members side by side, transposed Linear weights) on both inputs."""
    torch.manual_seed(0)
    layer = FieldEmbedding(MIXED_SCHEMA.field_dims, MIXED_SCHEMA.numerical_num, embed_dim=4).double()
    layer.min_split_macs = 0
    batch = _batches(1, torch.float64)[0]
    modules = [
        MLPBank(layer.output_dim, (6, 5), n=3, dropout=0.0, output_layer=True).double(),
        MLP(layer.output_dim, (6, 5), dropout=0.0, output_layer=True).double(),
        Gate(layer.output_dim, expert_num=4, gate_num=2).double(),
    ]
    for module in modules:
        flat = layer.flat(batch.categorical, batch.numerical)
        assert isinstance(flat, FlatFields)
        torch.testing.assert_close(module(flat), module(flat.tensor()), rtol=1e-12, atol=1e-12)


def test_small_products_skip_the_split():
    """Where the dense product is tiny, the split's fixed costs would dominate: it is not used."""
    layer = FieldEmbedding(MIXED_SCHEMA.field_dims, MIXED_SCHEMA.numerical_num, embed_dim=4)
    batch = _batches(1, torch.float32)[0]
    weight = torch.randn(layer.output_dim, 3)
    layer.min_split_macs = BATCH * layer.output_dim * 3 + 1
    flat = layer.flat(batch.categorical, batch.numerical)
    flat.linear(weight)
    assert flat._plan is None and flat._fields is not None  # formed and multiplied densely
    layer.min_split_macs = BATCH * layer.output_dim * 3
    flat = layer.flat(batch.categorical, batch.numerical)
    flat.linear(weight)
    assert flat._plan is not None and flat._fields is None  # split; the concatenation never formed


@pytest.mark.parametrize("keep", [0.8, 0.5, 0.1])
def test_dropout_masks_keep_each_element_with_the_given_probability(keep):
    torch.manual_seed(0)
    mask = dropout_mask(torch.Size((1001, 999)), keep, torch.device("cpu"))
    assert mask.shape == (1001, 999) and mask.dtype == torch.bool
    flat = mask.flatten()
    # At the rate everywhere: even and odd positions, first and last rows (sd <= 0.0007 here).
    for part in (flat[0::2], flat[1::2], mask[:500].flatten(), mask[500:].flatten()):
        assert abs(part.float().mean().item() - keep) < 0.004
    # Neighbours independent: kept together at rate keep^2.
    pairs = flat[: flat.numel() // 2 * 2].view(-1, 2)
    assert abs(pairs.all(dim=1).float().mean().item() - keep**2) < 0.004


def test_dropout_masks_follow_the_torch_seed():
    shape, device = torch.Size((64, 33)), torch.device("cpu")
    torch.manual_seed(5)
    first = dropout_mask(shape, 0.8, device)
    torch.manual_seed(5)
    assert torch.equal(dropout_mask(shape, 0.8, device), first)
    assert not torch.equal(dropout_mask(shape, 0.8, device), first)


def test_relu_dropout_is_dropout_of_relu_with_its_mask():
    torch.manual_seed(0)
    x = torch.randn(300, 40, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(7)
    out = relu_dropout(x, 0.2, training=True)
    torch.manual_seed(7)
    mask = dropout_mask(x.shape, 0.8, x.device)
    expected = torch.relu(x) * mask / 0.8
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)
    upstream = torch.randn_like(x)
    (got,) = torch.autograd.grad((out * upstream).sum(), x)
    (want,) = torch.autograd.grad((expected * upstream).sum(), x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    assert 0.7 < (out != 0).sum().item() / (x > 0).sum().item() < 0.9  # about 80% of positives kept
    assert torch.equal(relu_dropout(x, 0.2, training=False), torch.relu(x))
    assert torch.equal(relu_dropout(x, 0.0, training=True), torch.relu(x))

# Cosine between the bf16 and float32 gradients. Every Linear rounds its output to bf16, so the
# gradient's direction drifts with the depth of a path: DBMTL's paths have five hidden layers
# (bottom, tower, relation) where the others have four, and measure 0.87-0.98 over seeds at this
# size; SharedBottom given the same depth (a three-layer tower) measures 0.94-0.98.
BF16_GRADIENT_COSINE = {"dbmtl": 0.9}


@pytest.mark.parametrize("name", list_models())
def test_bfloat16_autocast_is_close_to_float32(name):
    """bf16 keeps about three significant digits: logits, loss and gradients stay close to float32's."""
    torch.manual_seed(0)
    model = small_model(name, MIXED_SCHEMA)  # no dropout: both runs see the same network
    for module in model.modules():
        if isinstance(module, FieldEmbedding):
            module.min_split_macs = 0  # the split path under autocast too
    batches = _batches(model.batches_per_step, torch.float32)
    model.eval()
    with torch.inference_mode():
        reference = model(batches[0].categorical, batches[0].numerical)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(batches[0].categorical, batches[0].numerical)
    assert low.dtype == torch.bfloat16  # autocast did reach the products
    torch.testing.assert_close(low.float(), reference, rtol=0.05, atol=0.05)

    model.train()
    results = []
    for precision in ("fp32", "bf16"):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model.training_loss(batches)
        loss.backward()
        results.append((loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    (loss32, grad32), (loss16, grad16) = results
    assert loss16.dtype == torch.float32  # the loss owns the sigmoid and runs in float32
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast leaves the weights alone
    assert abs(loss16.item() - loss32.item()) < 0.01 * loss32.item()
    assert torch.isfinite(grad16).all()
    # Same direction; element by element bf16 is loose, most of all for the biases in front of
    # BatchNorm, whose exact gradient is zero and whose bf16 gradient is rounding noise.
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > BF16_GRADIENT_COSINE.get(name, 0.95)


@pytest.mark.parametrize("ratio", RATIOS.values(), ids=RATIOS.keys())
@pytest.mark.parametrize("name", list_models())
def test_with_multi_valued_fields_and_no_numerical_features_split_products_equal_the_straightforward_ones(name, ratio):
    """The general schema's other side: two pooled bags (one weighted) and no numerical field."""
    torch.manual_seed(0)
    fast = small_model(name, BAG_SCHEMA, dropout=0.2).double()
    for module in fast.modules():
        if isinstance(module, FieldEmbedding):
            module.projection_ratio = ratio
            module.min_split_macs = 0
    plain = copy.deepcopy(fast)
    set_split_products(plain, False)
    batch = random_batch(BAG_SCHEMA, size=BATCH, seed=3)
    batch = batch._replace(bags=tuple(b._replace(weights=None if b.weights is None else b.weights.double()) for b in batch.bags))
    upstream = torch.randn(BATCH, fast.task_num, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    outputs = []
    for model in (fast, plain):
        model.train()
        torch.manual_seed(1)
        logits = model.logits(batch)
        (logits * upstream).sum().backward()
        outputs.append(logits)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-10)
    plain_parameters = dict(plain.named_parameters())
    for parameter_name, parameter in fast.named_parameters():
        torch.testing.assert_close(parameter.grad, plain_parameters[parameter_name].grad, rtol=1e-9, atol=1e-11, msg=parameter_name)
