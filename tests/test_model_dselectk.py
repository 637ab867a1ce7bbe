"""DSelect-k: the smooth-step, the binary-encoded selectors, the entropy term, exact sparsity after training."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_batch, small_model

from mtreclib.core.settings import ConfigError
from mtreclib.models import model_settings
from mtreclib.models.dselectk import binary_codes, selector_outputs, smooth_step


def test_smooth_step_on_hand_computed_values():
    t = torch.tensor([-3.0, -0.5, -0.25, 0.0, 0.25, 0.5, 2.0], dtype=torch.float64)
    # -2 t^3 + 1.5 t + 0.5 at gamma 1: t = 0.25 gives -0.03125 + 0.375 + 0.5.
    assert smooth_step(t, 1.0).tolist() == pytest.approx([0, 0, 0.15625, 0.5, 0.84375, 1, 1], abs=1e-15)
    # gamma scales the argument: S_gamma(t) = S_1(t / gamma).
    assert smooth_step(2 * t, 2.0).tolist() == pytest.approx(smooth_step(t, 1.0).tolist(), abs=1e-15)
    # Continuously differentiable: zero slope at the knots, 3 / (2 gamma) at 0.
    x = torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64, requires_grad=True)
    smooth_step(x, 1.0).sum().backward()
    assert x.grad.tolist() == pytest.approx([0, 1.5, 0], abs=1e-12)


def test_selectors_are_products_over_the_binary_codes():
    assert binary_codes(4).int().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert binary_codes(5).shape == (5, 3)
    # S(z) = (0.84375, 0.15625): r_l = prod over bits of S or 1 - S.
    r = selector_outputs(torch.tensor([[0.25, -0.25]], dtype=torch.float64), binary_codes(4), 1.0)
    a, b = 0.84375, 0.15625
    assert r[0].tolist() == pytest.approx([(1 - a) * (1 - b), (1 - a) * b, a * (1 - b), a * b], abs=1e-15)
    # Saturated logits select one expert exactly: code 10 is expert 2.
    r = selector_outputs(torch.tensor([[0.7, -2.0]]), binary_codes(4), 1.0)
    assert r[0].tolist() == [0.0, 0.0, 1.0, 0.0]


def _selectors(model, batch) -> torch.Tensor:
    """(B, T, k, n) the selectors ``r(z^(i))`` of every row, task and selector."""
    selectors, _ = model.selectors(model.embedding.flat(batch.categorical, batch.numerical))
    return selectors


def _entropy(r) -> float:
    return -sum(p * math.log(p + 1e-6) for p in r)


def test_auxiliary_is_the_weighted_entropy_of_the_selectors():
    torch.manual_seed(0)
    model = small_model("dselectk", entropy_weight=0.01)
    batch = random_batch(size=16)
    losses = model.task_losses([batch])
    selectors = _selectors(model, batch).tolist()  # (B, T, k, n)
    entropy = sum(_entropy(selectors[b][t][i]) for b in range(16) for t in range(2) for i in range(2)) / 16
    assert losses.auxiliary.item() == pytest.approx(0.01 * entropy, rel=1e-5)


def _double(batch):
    return batch._replace(numerical=batch.numerical.double())


def test_default_weights_are_the_authors_summed_over_a_batch_of_2000_rows_with_example_gates():
    """The authors add ``1e-6 * sum H + sum 1 / sum_reachable r`` over every row's selectors (B, T,
    k); here batch means with weights 2e-3 and 2000, less the constant 2000 T k: equal at 2,000 rows."""
    torch.manual_seed(0)
    model = small_model("dselectk", expert_num=3).double()  # 3 experts: 4 codes, one unreachable
    assert (model.config.entropy_weight, model.config.unreachable_weight) == (2e-3, 2000.0)
    batch = _double(random_batch(size=2000))
    selectors = _selectors(model, batch)  # (2000, 2, 2, 3)
    authors = 1e-6 * sum(_entropy(r) for r in selectors.reshape(-1, 3).tolist())
    authors += sum(1 / sum(r) for r in selectors.reshape(-1, 3).tolist())
    assert model.task_losses([batch]).auxiliary.item() + 2000 * 2 * 2 == pytest.approx(authors, rel=1e-12)


def test_default_weights_are_the_authors_with_task_gates_whatever_the_batch():
    """A task gate's selectors (T, k) are computed once per step: no batch factor, the authors' 1e-6 and 1."""
    torch.manual_seed(0)
    model = small_model("dselectk", expert_num=3, gate_conditioning="task").double()
    assert (model.config.entropy_weight, model.config.unreachable_weight) == (1e-6, 1.0)
    with torch.no_grad():
        model.z.uniform_(-0.3, 0.3)  # away from the initial near-uniform selectors
    selectors = _selectors(model, _double(random_batch(size=8)))[0].reshape(-1, 3).tolist()  # (T k, n)
    authors = 1e-6 * sum(_entropy(r) for r in selectors) + sum(1 / sum(r) for r in selectors)
    for size in (8, 100):
        auxiliary = model.task_losses([_double(random_batch(size=size))]).auxiliary.item()
        assert auxiliary + 2 * 2 == pytest.approx(authors, rel=1e-12)


def test_given_weights_are_kept_whatever_the_conditioning():
    assert model_settings("dselectk")["entropy_weight"] == 2e-3
    model = small_model("dselectk", gate_conditioning="task", entropy_weight=0.5, unreachable_weight=3.0)
    assert (model.config.entropy_weight, model.config.unreachable_weight) == (0.5, 3.0)


def test_unreachable_codes_are_penalised_when_experts_are_not_a_power_of_two():
    torch.manual_seed(0)
    model = small_model("dselectk", expert_num=3, entropy_weight=0.0, unreachable_weight=1.0)
    batch = random_batch(size=16)
    selectors = _selectors(model, batch)  # (B, T, k, 3): 3 of 4 codes
    assert (selectors.sum(-1) < 1).all()
    expected = (1 / selectors.sum(-1) - 1).mean(0).sum()
    assert model.task_losses([batch]).auxiliary.item() == pytest.approx(expected.item(), rel=1e-6)
    # A power of two has no unreachable code, hence no such term.
    four = small_model("dselectk", expert_num=4, entropy_weight=0.0)
    assert four.task_losses([batch]).auxiliary.item() == 0.0


def test_after_training_each_gate_selects_exactly_k_experts():
    torch.manual_seed(0)
    model = small_model("dselectk", expert_num=4, selected_experts=2, entropy_weight=0.1)
    batch = random_batch(size=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        loss = model.training_loss([batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        selectors, _ = model.selectors(model.embedding.flat(batch.categorical, batch.numerical))
        gates = model.gates(batch.categorical, batch.numerical)  # (B, T, 4)
    assert ((selectors == 0) | (selectors == 1)).all()  # every selector converged to one expert
    assert ((gates > 0).sum(-1) == 2).all()  # two distinct experts per row and task; the others exactly 0
    torch.testing.assert_close(gates.sum(-1), torch.ones(128, 2))


def test_k_cannot_exceed_the_experts():
    with pytest.raises(ConfigError, match="selected_experts"):
        small_model("dselectk", expert_num=2, selected_experts=3)
