"""ESCM2: ESMM with a counterfactual CVR risk, inverse propensity weighted or doubly robust."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from mtreclib.core.schema import Batch, FeatureSchema
from mtreclib.core.settings import search_range, setting
from mtreclib.models.base import TaskLosses, loss_dtype
from mtreclib.models.config import ModelConfig
from mtreclib.models.esmm import ESMM
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import MLPBank


@dataclass(frozen=True)
class ESCM2Config(ModelConfig):
    """ESCM2's risk weights and propensity clip."""

    counterfactual_weight: float = setting(
        0.1, "weight lambda_c of the counterfactual CVR risk (escm2-ipw, escm2-dr)", minimum=0, search=search_range(0.01, 1.0, log=True)
    )
    global_weight: float = setting(
        1.0, "weight lambda_g of the CTCVR (global) risk (escm2-ipw, escm2-dr)", minimum=0, search=search_range(0.1, 1.0)
    )
    max_inverse_propensity: float = setting(
        15.0, "cap on the inverse propensity 1 / pCTR, i.e. pCTR clipped below at its inverse (escm2-ipw, escm2-dr)", minimum=1,
        search=search_range(5.0, 50.0, log=True),
    )


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B,) ``values`` over the batch, weighted by (B,) row ``weights`` when given -> ()."""
    if weights is None:
        return values.mean()
    return (weights * values).sum() / weights.sum().clamp_min(1e-12)


def ipw_risk(
    error: torch.Tensor, observed: torch.Tensor, propensity: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``1/|D| sum_i o_i e_i / o^_i`` over all rows: (B,) errors, observation indicators, propensities -> ()."""
    return weighted_mean(observed * error / propensity, weights)


def dr_risks(
    error: torch.Tensor, imputed: torch.Tensor, observed: torch.Tensor, propensity: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The doubly robust risk and the imputation loss, from (B,) tensors -> two ().

    ``L_DR = 1/|D| sum_i [e^_i + o_i (e_i - e^_i) / o^_i]`` trains the CVR tower (through ``e``
    only: ``e^`` is detached); ``L_IMP = 1/|D| sum_i o_i (e_i - e^_i)^2 / o^_i`` trains the
    imputation tower (``e`` detached), as in doubly robust joint learning.
    """
    fixed_imputed, fixed_error = imputed.detach(), error.detach()
    dr = weighted_mean(fixed_imputed + observed * (error - fixed_imputed) / propensity, weights)
    imputation = weighted_mean(observed * (fixed_error - imputed) ** 2 / propensity, weights)
    return dr, imputation


class ESCM2(ESMM):
    """ESMM's towers and losses plus a counterfactual risk on the conditional (CVR) tower.

    Contract, per task ``t`` with parent ``t'`` (conversion and click), over all rows ``i`` of a
    batch ``D``, with ``o_i`` the parent's label (clicked), ``o^_i = max(p_i(t'), 1 / cap)`` the
    propensity (pCTR, detached: the CTR tower learns from its own loss), ``r^_i = p_i(t | t')``
    the CVR and ``e_i = BCE(y_it, r^_i)`` its error::

        L = L_ctr + lambda_g L_ctcvr + lambda_c L_cf
        L_cf (escm2-ipw) = 1/|D| sum_i o_i e_i / o^_i
        L_cf (escm2-dr)  = 1/|D| sum_i [e^_i + o_i (e_i - e^_i) / o^_i] + 1/|D| sum_i o_i (e_i - e^_i)^2 / o^_i

    where ``e^_i >= 0`` is an imputation tower's prediction of ``e_i`` (softplus of its logit:
    a BCE is unbounded above). Tasks without parent keep their BCE.

    Decisions: ``lambda_c L_cf`` is added to the child task's loss (it supervises that task's
    tower), so equal task weights give ``(L_ctr + lambda_g L_ctcvr + lambda_c L_cf) / T``, the
    paper's proportions. Defaults ``lambda_c = 0.1``, ``lambda_g = 1`` as in MMLRec's ESCM2 (the
    paper searches them; PaddleRec's ESCM2 sets 0.01 / 1 and 0.5 / 0.5 in its two configs). Both
    risks are the paper's estimators, normalised by the batch's impressions ``|D|``, with the
    inverse propensity ``1 / o^`` capped at 15: PaddleRec's clip in its DR risk, applied to the
    IPW risk as well. PaddleRec's IPW risk is another reading: it normalises by the batch's
    clicks, ``sum_i o_i e_i min(1 / (o^_i N_clicks), 15)`` (a self-normalised estimator, where the
    cap seldom binds); this library follows the paper. In the DR risk the imputation is
    detached and in the imputation loss the error is, so each tower learns from its own term.
    The imputation towers (one per child task, ``MLPBank``) run only in training.

    Reference: Wang, Chang, Liu, Huang, Chen, Yu, Li, Chu, "ESCM2: Entire Space Counterfactual
    Multi-Task Model for Post-Click Conversion Rate Estimation", SIGIR 2022.
    https://doi.org/10.1145/3477495.3531972
    """

    Config = ESCM2Config
    paper = "Wang et al., ESCM2: Entire Space Counterfactual Multi-Task Model for Post-Click Conversion Rate Estimation, SIGIR 2022"
    estimator: ClassVar[str] = "ipw"

    def __init__(self, schema: FeatureSchema, config: ESCM2Config | None = None):
        super().__init__(schema, config)
        c = self.config
        self.child_tasks = [t for t, parent in enumerate(self.parents) if parent is not None]
        if self.estimator == "dr":
            dims = (*c.bottom_dims, *c.tower_dims)
            self.imputation = MLPBank(self.embedding.output_dim, dims, len(self.child_tasks), c.dropout, output_layer=True)

    def task_losses(self, batches: Sequence[Batch]) -> TaskLosses:
        """(T,) per-task losses: the chained BCE, plus the weighted counterfactual risk on child tasks."""
        losses = [self._batch_losses(batch) for batch in batches]
        return TaskLosses(losses[0] if len(losses) == 1 else torch.stack(losses).mean(0))

    def _batch_losses(self, batch: Batch) -> torch.Tensor:
        c = self.config
        emb = self.embedding.flat(batch.categorical, batch.numerical, batch.bags)
        conditional = self.tower_logits(emb)  # (B, T)
        dtype = loss_dtype(conditional)  # the loss in float32, or float64 for a float64 model, as task_bce
        conditional, labels = conditional.to(dtype), batch.labels.to(dtype)
        weights = None if batch.weights is None else batch.weights.to(dtype)
        logits = self.chain(conditional)  # (B, T)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")  # (B, T)
        imputed = F.softplus(self.imputation(emb).squeeze(-1).to(dtype)) if self.estimator == "dr" else None  # (B, C)
        losses = []
        for t, parent in enumerate(self.parents):
            task_loss = weighted_mean(bce[:, t], weights)
            if parent is not None:
                observed = labels[:, parent]
                propensity = torch.sigmoid(logits[:, parent].detach()).clamp_min(1.0 / c.max_inverse_propensity)
                error = F.binary_cross_entropy_with_logits(conditional[:, t], labels[:, t], reduction="none")  # (B,)
                if imputed is None:
                    risk = ipw_risk(error, observed, propensity, weights)
                else:
                    dr, imputation = dr_risks(error, imputed[:, self.child_tasks.index(t)], observed, propensity, weights)
                    risk = dr + imputation
                task_loss = c.global_weight * task_loss + c.counterfactual_weight * risk
            losses.append(task_loss)
        return torch.stack(losses)


@register_model("escm2-ipw")
class ESCM2IPW(ESCM2):
    __doc__ = ESCM2.__doc__
    model_name = "escm2-ipw"
    estimator = "ipw"


@register_model("escm2-dr")
class ESCM2DR(ESCM2):
    __doc__ = ESCM2.__doc__
    model_name = "escm2-dr"
    estimator = "dr"
