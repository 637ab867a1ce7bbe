"""ESCM2: the counterfactual CVR risks, their weights and clip, on a hand-made batch."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_batch, small_model
from torch import nn

from mtreclib.core.schema import Batch
from mtreclib.models import model_settings

# Four impressions: clicked and converted, clicked only, neither, clicked only.
LABELS = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
# Tower logits: the last row's pCTR, sigmoid(-4) = 0.018, is below the clip 1/15.
CTR_LOGITS = [0.5, -1.0, 2.0, -4.0]
CVR_LOGITS = [1.5, 0.3, -0.7, 2.0]
IMPUTATION_LOGITS = [0.2, -1.0, 0.7, 1.3]


class Fixed(nn.Module):
    """Stands in for a tower bank: returns fixed logits whatever its input."""

    def __init__(self, values: list[list[float]], dtype: torch.dtype = torch.float32):
        super().__init__()
        self.values = nn.Parameter(torch.tensor(values, dtype=dtype))

    def forward(self, emb) -> torch.Tensor:
        return self.values.unsqueeze(-1)  # (B, n, 1)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _model(name: str, dtype: torch.dtype = torch.float32, **settings):
    model = small_model(name, **settings).to(dtype)
    model.towers = Fixed([[c, v] for c, v in zip(CTR_LOGITS, CVR_LOGITS)], dtype)
    if name == "escm2-dr":
        model.imputation = Fixed([[i] for i in IMPUTATION_LOGITS], dtype)
    return model


def _batch() -> Batch:
    batch = random_batch(size=4)
    return batch._replace(labels=LABELS)


def _by_hand(estimator: str, counterfactual: float, global_: float, cap: float = 15.0) -> list[float]:
    ctr = ctcvr = risk = 0.0
    for row in range(4):
        click, conversion = LABELS[row].tolist()
        pctr, pcvr = _sigmoid(CTR_LOGITS[row]), _sigmoid(CVR_LOGITS[row])
        ctr += _bce(pctr, click) / 4
        ctcvr += _bce(pctr * pcvr, conversion) / 4
        propensity = max(pctr, 1 / cap)
        error = _bce(pcvr, conversion)
        if estimator == "ipw":
            risk += click * error / propensity / 4
        else:
            imputed = math.log1p(math.exp(IMPUTATION_LOGITS[row]))  # softplus
            risk += (imputed + click * (error - imputed) / propensity) / 4  # doubly robust
            risk += click * (error - imputed) ** 2 / propensity / 4  # imputation loss
    return [ctr, global_ * ctcvr + counterfactual * risk]


@pytest.mark.parametrize("name, estimator", [("escm2-ipw", "ipw"), ("escm2-dr", "dr")])
def test_task_losses_are_the_papers_on_a_hand_made_batch(name, estimator):
    model = _model(name, counterfactual_weight=0.3, global_weight=0.7)
    tasks = model.task_losses([_batch()]).tasks
    assert tasks.tolist() == pytest.approx(_by_hand(estimator, 0.3, 0.7), rel=1e-6)


@pytest.mark.parametrize("name, estimator", [("escm2-ipw", "ipw"), ("escm2-dr", "dr")])
def test_a_float64_model_computes_its_losses_in_float64(name, estimator):
    """The same hand computation, to rounding: the losses are not cast down to float32."""
    model = _model(name, torch.float64, counterfactual_weight=0.3, global_weight=0.7)
    tasks = model.task_losses([_batch()]).tasks
    assert tasks.dtype == torch.float64
    assert tasks.tolist() == pytest.approx(_by_hand(estimator, 0.3, 0.7), rel=1e-14, abs=0)


@pytest.mark.parametrize("name, estimator", [("escm2-ipw", "ipw"), ("escm2-dr", "dr")])
def test_default_weights_and_clip(name, estimator):
    settings = model_settings(name)
    assert (settings["counterfactual_weight"], settings["global_weight"], settings["max_inverse_propensity"]) == (0.1, 1.0, 15.0)
    tasks = _model(name).task_losses([_batch()]).tasks
    assert tasks.tolist() == pytest.approx(_by_hand(estimator, 0.1, 1.0), rel=1e-6)
    # The clip matters on this batch: without it the last row weighs 1 / 0.018.
    assert tasks.tolist() != pytest.approx(_by_hand(estimator, 0.1, 1.0, cap=1e9), rel=1e-6)


def test_propensity_is_not_trained_by_the_counterfactual_risk():
    """The CTR logits' gradient is that of L_ctr + lambda_g L_ctcvr alone."""
    model = _model("escm2-ipw", counterfactual_weight=0.5)
    model.task_losses([_batch()]).tasks.sum().backward()
    with_risk = model.towers.values.grad[:, 0].clone()
    plain = _model("escm2-ipw", counterfactual_weight=0.0)
    plain.task_losses([_batch()]).tasks.sum().backward()
    torch.testing.assert_close(with_risk, plain.towers.values.grad[:, 0])
    # ... while the CVR logits do get the risk's gradient, on clicked rows only.
    cvr_extra = model.towers.values.grad[:, 1] - plain.towers.values.grad[:, 1]
    assert (cvr_extra[LABELS[:, 0] == 1] != 0).all() and (cvr_extra[LABELS[:, 0] == 0] == 0).all()


def test_doubly_robust_imputation_learns_only_from_its_loss():
    """d/d e^ of the imputation loss o (e - e^)^2 / o^, times softplus': the DR term adds nothing."""
    model = _model("escm2-dr", counterfactual_weight=0.5)
    model.task_losses([_batch()]).tasks.sum().backward()
    for row in range(4):
        click, conversion = LABELS[row].tolist()
        pctr, pcvr = _sigmoid(CTR_LOGITS[row]), _sigmoid(CVR_LOGITS[row])
        error, imputed = _bce(pcvr, conversion), math.log1p(math.exp(IMPUTATION_LOGITS[row]))
        expected = 0.5 * click * -2 * (error - imputed) / max(pctr, 1 / 15) / 4 * _sigmoid(IMPUTATION_LOGITS[row])
        assert model.imputation.values.grad[row, 0].item() == pytest.approx(expected, rel=1e-5, abs=1e-9)


def test_forward_is_esmm_chained_product():
    torch.manual_seed(0)
    model = small_model("escm2-dr").eval()
    batch = random_batch(size=8)
    p = torch.sigmoid(model(batch.categorical, batch.numerical))
    q = model.conditional_probabilities(batch.categorical, batch.numerical)
    torch.testing.assert_close(p[:, 1], q[:, 0] * q[:, 1], rtol=1e-5, atol=1e-7)
