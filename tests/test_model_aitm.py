"""AITM's behavioural expectation calibrator (the option; its default is the original's loss)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_batch, small_model

from mtreclib.models import MultiTaskModel, model_settings
from mtreclib.models.aitm import calibrator_penalty


def _logit(p: float) -> float:
    return float(torch.logit(torch.tensor(p, dtype=torch.float64)))


def test_penalty_on_a_hand_made_case():
    """max(p_t - p_{t-1}, 0), summed over consecutive tasks, averaged over rows."""
    probabilities = [[0.2, 0.5, 0.9], [0.6, 0.1, 0.3], [0.3, 0.3, 0.1], [0.9, 0.8, 0.7]]
    logits = torch.tensor([[_logit(p) for p in row] for row in probabilities], dtype=torch.float64)
    # Row by row: 0.3 + 0.4, 0 + 0.2, 0 + 0, 0 + 0.
    assert calibrator_penalty(logits).item() == pytest.approx((0.7 + 0.2) / 4, rel=1e-12)
    assert calibrator_penalty(logits[:, :2]).item() == pytest.approx(0.3 / 4, rel=1e-12)
    weights = torch.tensor([1.0, 3.0, 0.0, 0.0], dtype=torch.float64)
    assert calibrator_penalty(logits, weights).item() == pytest.approx((0.7 + 3 * 0.2) / 4, rel=1e-12)


def test_penalty_pushes_the_later_task_down_and_the_earlier_up_only_where_violated():
    logits = torch.tensor([[_logit(0.2), _logit(0.5)], [_logit(0.6), _logit(0.1)]], requires_grad=True)
    calibrator_penalty(logits).backward()
    assert logits.grad[0, 1] > 0 and logits.grad[0, 0] < 0  # gradient descent lowers p_2, raises p_1
    assert (logits.grad[1] == 0).all()


def test_default_is_off_and_bit_identical_to_the_plain_loss():
    assert model_settings("aitm")["calibrator_weight"] == 0.0
    batches = [random_batch(size=64, seed=s) for s in range(2)]
    torch.manual_seed(0)
    model = small_model("aitm", dropout=0.2)
    torch.manual_seed(1)
    losses = model.task_losses(batches)
    torch.manual_seed(1)
    plain = MultiTaskModel.task_losses(model, batches)
    assert losses.auxiliary is None
    assert torch.equal(losses.tasks, plain.tasks)


def test_auxiliary_is_alpha_times_penalty_over_task_num():
    torch.manual_seed(0)
    model = small_model("aitm", calibrator_weight=0.6)
    batch = random_batch(size=64)
    losses = model.task_losses([batch])
    logits = model(batch.categorical, batch.numerical)  # no dropout: the same logits
    assert losses.auxiliary.item() == pytest.approx(0.6 * calibrator_penalty(logits).item() / 2, rel=1e-6)
    assert losses.auxiliary.item() > 0
    total = model.training_loss([batch])
    assert total.item() == pytest.approx(losses.tasks.mean().item() + losses.auxiliary.item(), rel=1e-6)
