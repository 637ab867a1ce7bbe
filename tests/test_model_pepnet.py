"""PEPNet: Gate NU, EPNet's field scales, PPNet's hidden-unit scales, and what the gates read."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SMALL_SCHEMA, random_batch, small_model
from torch import nn

from mtreclib.core.schema import BagField, FeatureSchema
from mtreclib.core.settings import ConfigError
from mtreclib.models import create_model
from mtreclib.models.pepnet import GateNU

# Roles on fields 0 (user) and 2 (item); 1 and 3 are general fields only.
ROLE_SCHEMA = FeatureSchema((5, 3, 11, 2), 6, field_roles=("user", None, "item", None))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_gate_nu_is_relu_then_twice_sigmoid_on_a_hand_case():
    gate = GateNU(2, [3])
    with torch.no_grad():
        gate.first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        gate.first.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
        gate.second[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [-1.0, 0.0, 3.0]]))
        gate.second[0].bias.copy_(torch.tensor([0.5, 0.0, 0.0]))
    (delta,) = gate(torch.tensor([[1.0, -2.0], [0.5, 2.0]]))
    # Row 0: hidden relu(1, -2, -2) = (1, 0, 0); row 1: relu(0.5, 2, 1.5) = (0.5, 2, 1.5).
    expected = [
        [2 * _sigmoid(1.5), 2 * _sigmoid(0.0), 2 * _sigmoid(-1.0)],
        [2 * _sigmoid(1.0), 2 * _sigmoid(4.0), 2 * _sigmoid(-0.5 + 4.5)],
    ]
    torch.testing.assert_close(delta, torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_gate_nu_scales_within_zero_and_two_centred_on_one():
    torch.manual_seed(0)
    gate = GateNU(8, [5, 7])
    outputs = gate(torch.randn(1000, 8))
    assert [o.shape for o in outputs] == [(1000, 5), (1000, 7)]
    for delta in outputs:
        assert (delta > 0).all() and (delta < 2).all()
    with torch.no_grad():  # a zero pre-activation is the identity scale 1; large ones reach 0 and 2
        gate.second[0].weight.zero_()
        gate.second[0].bias.copy_(torch.tensor([0.0, 20.0, -20.0, 0.0, 0.0]))
    delta = gate(torch.randn(3, 8))[0]
    assert torch.equal(delta[:, 0], torch.ones(3)) and (delta[:, 1] > 1.99).all() and (delta[:, 2] < 0.01).all()


def _gate_outputs(model, batch) -> dict[str, list[torch.Tensor]]:
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [
        model.epnet.register_forward_hook(lambda m, i, o: seen.setdefault("epnet", [t.detach() for t in o])),
        model.ppnet.register_forward_hook(lambda m, i, o: seen.setdefault("ppnet", [t.detach() for t in o])),
    ]
    model(batch.categorical, batch.numerical)
    for hook in hooks:
        hook.remove()
    return seen


def test_prior_only_gates_read_only_the_role_fields():
    torch.manual_seed(1)
    model = small_model("pepnet", ROLE_SCHEMA, gates_read_general=False).eval()
    assert model.prior_fields.tolist() == [0, 2]
    batch = random_batch(ROLE_SCHEMA, size=32)
    before = _gate_outputs(model, batch)
    other = batch.categorical.clone()
    other[:, 1] = (other[:, 1] + 1) % 3  # fields without a role, and the numerical features
    other[:, 3] = (other[:, 3] + 1) % 2
    after = _gate_outputs(model, batch._replace(categorical=other, numerical=torch.rand_like(batch.numerical)))
    for name in ("epnet", "ppnet"):
        for a, b in zip(before[name], after[name]):
            assert torch.equal(a, b), name
    user = batch.categorical.clone()
    user[:, 0] = (user[:, 0] + 1) % 5
    changed = _gate_outputs(model, batch._replace(categorical=user))
    assert not torch.equal(changed["epnet"][0], before["epnet"][0])
    assert not torch.equal(changed["ppnet"][0], before["ppnet"][0])


def test_papers_gates_read_the_stopped_general_embeddings_and_epnet_output():
    torch.manual_seed(2)
    model = small_model("pepnet", ROLE_SCHEMA).eval()
    batch = random_batch(ROLE_SCHEMA, size=8)
    inputs = {}
    model.epnet.register_forward_pre_hook(lambda m, args: inputs.setdefault("epnet", args[0]))
    model.ppnet.register_forward_pre_hook(lambda m, args: inputs.setdefault("ppnet", args[0]))
    model(batch.categorical, batch.numerical)
    inputs = {name: x.tensor() for name, x in inputs.items()}  # views of the field embeddings (mtreclib.nn.field_views)
    fields = model.embedding(batch.categorical, batch.numerical)  # (B, E, D)
    torch.testing.assert_close(inputs["epnet"], fields.flatten(1))
    (scale,) = model.epnet(fields.flatten(1))
    o_ep = (fields * scale.unsqueeze(-1)).flatten(1)
    torch.testing.assert_close(inputs["ppnet"], torch.cat([fields[:, [0, 2]].flatten(1), o_ep], dim=1))
    assert not inputs["epnet"].requires_grad and not inputs["ppnet"].requires_grad  # stopped


def test_no_gradient_reaches_the_embeddings_through_the_gates():
    torch.manual_seed(3)
    model = small_model("pepnet", ROLE_SCHEMA)
    batch = random_batch(ROLE_SCHEMA, size=32)
    outputs = []
    model.epnet.register_forward_hook(lambda m, i, o: outputs.extend(o))
    model.ppnet.register_forward_hook(lambda m, i, o: outputs.extend(o))
    model(batch.categorical, batch.numerical)
    gate_sum = sum(o.sum() for o in outputs)
    table, gate_weight = model.embedding.embedding.weight, model.ppnet.first.weight
    grads = torch.autograd.grad(gate_sum, [table, gate_weight], allow_unused=True)
    assert grads[0] is None and grads[1].abs().sum() > 0


def test_logits_computed_by_hand():
    """O_ep = delta (x) E per field; each task's hidden layers scaled by its own PPNet gate."""
    torch.manual_seed(4)
    model = small_model("pepnet", ROLE_SCHEMA)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    model.eval()
    batch = random_batch(ROLE_SCHEMA, size=16)

    def gate_nu(gate, x, unit):
        dims = gate.output_dims
        start = sum(dims[:unit])
        first_w, first_b = gate.first.weight[start : start + dims[unit]], gate.first.bias[start : start + dims[unit]]
        hidden = torch.relu(x @ first_w.T + first_b)
        return 2 * torch.sigmoid(hidden @ gate.second[unit].weight.T + gate.second[unit].bias)

    with torch.no_grad():
        fields = model.embedding(batch.categorical, batch.numerical)  # (B, E, D): 4 categorical + numerical
        general = fields.flatten(1)
        scale = gate_nu(model.epnet, general, 0)  # (B, 5): one per field
        o_ep = torch.cat([fields[:, f] * scale[:, f : f + 1] for f in range(5)], dim=1)
        pp_input = torch.cat([fields[:, 0], fields[:, 2], o_ep], dim=1)
        dims = (16, 8, 8, 4)  # bottom_dims + tower_dims of the small configuration
        logits = []
        for t in range(2):
            h = o_ep
            for layer, bank in enumerate(model.towers):
                if layer > 0:  # PPNet: task t's slice of the layer's gate scales the hidden units
                    delta = gate_nu(model.ppnet, pp_input, layer - 1)
                    h = h * delta[:, t * dims[layer - 1] : (t + 1) * dims[layer - 1]]
                h = h @ bank.weights[0][t] + bank.biases[0][t]
                if layer < len(dims):
                    norm, width = bank.norms[0], dims[layer]
                    rows = slice(t * width, (t + 1) * width)
                    h = (h - norm.running_mean[rows]) / torch.sqrt(norm.running_var[rows] + norm.eps)
                    h = torch.relu(h * norm.weight[rows] + norm.bias[rows])
            logits.append(h.squeeze(-1))
        torch.testing.assert_close(model(batch.categorical, batch.numerical), torch.stack(logits, dim=1), rtol=1e-5, atol=1e-6)


def test_a_schema_without_prior_roles_is_refused_with_the_spec_key():
    plain = FeatureSchema((5, 3), 2)
    with pytest.raises(ValueError, match=r"role.*dataset spec"):
        create_model("pepnet", plain)
    context_only = FeatureSchema((5, 3), 2, field_roles=("context", None))
    with pytest.raises(ValueError, match="user or item or author"):
        create_model("pepnet", context_only)
    assert create_model("pepnet", context_only, prior_roles=("context",)).prior_fields.tolist() == [0]
    with pytest.raises(ConfigError, match="prior_roles"):
        create_model("pepnet", SMALL_SCHEMA, prior_roles=("users",))


def test_multi_valued_fields_with_a_role_are_prior_too():
    schema = FeatureSchema((5, 3), 0, field_roles=(None, "user"), bags=(BagField("tags", 9, role="item"),))
    model = create_model("pepnet", schema, embed_dim=4, bottom_dims=(8,), tower_dims=())
    assert model.prior_fields.tolist() == [1, 2]
