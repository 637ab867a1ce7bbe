"""ESMM: the product of probabilities, computed stably, and its losses on the entire space."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SMALL_SCHEMA, random_batch, small_model

from mtreclib.core.schema import FeatureSchema
from mtreclib.models import create_model
from mtreclib.models.esmm import chained_log_probabilities


def _bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_logits_are_the_logit_of_pctr_times_pcvr_not_a_product_of_logits():
    torch.manual_seed(0)
    model = small_model("esmm").double().eval()
    batch = random_batch(size=16)
    numerical = batch.numerical.double()
    logits = model(batch.categorical, numerical)
    s = model.conditional_logits(batch.categorical, numerical)  # the towers' own logits
    for row in range(16):
        pctr = 1 / (1 + math.exp(-s[row, 0].item()))
        pcvr = 1 / (1 + math.exp(-s[row, 1].item()))
        pctcvr = pctr * pcvr
        assert logits[row, 0].item() == pytest.approx(math.log(pctr / (1 - pctr)), rel=1e-12, abs=1e-12)
        assert logits[row, 1].item() == pytest.approx(math.log(pctcvr / (1 - pctcvr)), rel=1e-12, abs=1e-12)
        assert logits[row, 1].item() != pytest.approx(s[row, 0].item() * s[row, 1].item())


def test_conditional_probabilities_are_pcvr_on_every_row():
    torch.manual_seed(1)
    model = small_model("esmm").eval()
    batch = random_batch(size=16)
    pcvr = model.conditional_probabilities(batch.categorical, batch.numerical)
    pctr_pctcvr = torch.sigmoid(model(batch.categorical, batch.numerical))
    torch.testing.assert_close(pcvr[:, 0], pctr_pctcvr[:, 0])
    torch.testing.assert_close(pctr_pctcvr[:, 1], pctr_pctcvr[:, 0] * pcvr[:, 1], rtol=1e-5, atol=1e-7)


def test_extreme_probabilities_stay_finite_and_exact_in_float32():
    """Near 1 and near 0: log(1 - p1 p2) without forming 1 - p1 p2, which float32 rounds to 0."""
    s = torch.tensor([[30.0, 30.0], [-30.0, -30.0], [0.0, 40.0], [40.0, 0.0]])
    log_p, log_not_p = chained_log_probabilities(s, (None, 0))
    # 1 - sigmoid(30)^2 = 2 e^-30 to first order; sigmoid(-30)^2 = e^-60 to first order.
    assert log_not_p[0, 1].item() == pytest.approx(math.log(2) - 30, abs=1e-5)
    assert log_p[1, 1].item() == pytest.approx(-60, abs=1e-5)
    assert log_p[2, 1].item() == pytest.approx(math.log(0.5), abs=1e-6)
    assert log_not_p[3, 1].item() == pytest.approx(math.log(0.5), abs=1e-6)
    logits = log_p - log_not_p
    assert torch.isfinite(logits).all()
    naive = torch.sigmoid(s[:, 0]) * torch.sigmoid(s[:, 1])
    assert torch.log1p(-naive[0]) == -math.inf  # the naive product's complement is gone in float32


def test_loss_is_ctr_plus_ctcvr_on_all_rows_and_no_cvr_term():
    torch.manual_seed(2)
    model = small_model("esmm").double().eval()  # eval: the towers' BatchNorm uses running statistics
    batch = random_batch(size=12)
    batch = batch._replace(numerical=batch.numerical.double(), labels=batch.labels.double())
    s = model.conditional_logits(batch.categorical, batch.numerical)
    ctr, ctcvr = 0.0, 0.0
    for row in range(12):
        pctr = 1 / (1 + math.exp(-s[row, 0].item()))
        pctcvr = pctr / (1 + math.exp(-s[row, 1].item()))
        ctr += _bce(pctr, batch.labels[row, 0].item()) / 12
        ctcvr += _bce(pctcvr, batch.labels[row, 1].item()) / 12
    tasks = model.task_losses([batch]).tasks
    assert tasks.tolist() == pytest.approx([ctr, ctcvr], rel=1e-6)


def test_a_chain_of_relations_multiplies_along_it_and_a_root_is_predicted_directly():
    """c implies b implies a: p(c) = p(a) p(b | a) p(c | b); d has no parent."""
    schema = FeatureSchema((5, 3), 2, ("a", "b", "c", "d"), task_implies=("", "a", "b", ""))
    torch.manual_seed(3)
    model = create_model("esmm", schema, embed_dim=4, bottom_dims=(8,), tower_dims=(4,), dropout=0.0).double().eval()
    categorical = torch.tensor([[0, 1], [4, 2], [2, 0]])
    numerical = torch.rand(3, 2, dtype=torch.float64)
    q = torch.sigmoid(model.conditional_logits(categorical, numerical))
    p = torch.sigmoid(model(categorical, numerical))
    torch.testing.assert_close(p[:, 1], q[:, 0] * q[:, 1], rtol=1e-12, atol=0)
    torch.testing.assert_close(p[:, 2], q[:, 0] * q[:, 1] * q[:, 2], rtol=1e-12, atol=0)
    torch.testing.assert_close(p[:, 3], q[:, 3], rtol=1e-12, atol=0)


def test_a_schema_without_any_relation_is_refused_naming_what_is_needed():
    schema = FeatureSchema(SMALL_SCHEMA.field_dims, SMALL_SCHEMA.numerical_num)
    message = r"esmm needs a task that implies another \(conversion implies click\): the dataset spec's implies:"
    with pytest.raises(ValueError, match=message):
        create_model("esmm", schema)
