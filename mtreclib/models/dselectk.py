"""DSelect-k: MMoE with differentiable top-k gates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtreclib.core.schema import Bag, Batch, FeatureSchema
from mtreclib.core.settings import ConfigError, search_choices, search_range, setting
from mtreclib.models.base import MultiTaskModel, TaskLosses
from mtreclib.models.config import ExpertConfig
from mtreclib.models.registry import register_model
from mtreclib.nn.layers import FieldEmbedding, MLPBank, mix
from mtreclib.nn.products import input_linear

ENTROPY_EPSILON = 1e-6  # inside the entropy's log, as in the authors' code

# The regularisers' default weights by gate conditioning: the authors' weights (1e-6 for the
# entropy, their EntropyRegularizer's default; 1 for the unreachable-codes term) on their
# reduction, a sum over every selector the gates computed. Example gates compute theirs once per
# row, so a sum over the batch: as a batch mean here, at a batch of 2,000 rows. Task gates
# compute theirs once per step: no batch factor.
AUTHORS_ROWS = 2000
DEFAULT_ENTROPY_WEIGHT = {"example": 2e-3, "task": 1e-6}
DEFAULT_UNREACHABLE_WEIGHT = {"example": float(AUTHORS_ROWS), "task": 1.0}


@dataclass(frozen=True)
class DSelectKConfig(ExpertConfig):
    """DSelect-k's settings (the authors' code's defaults)."""

    selected_experts: int = setting(
        2, "k: experts each task's gate selects at most (dselectk)", minimum=1,
        search=search_range(1, 2),  # at most expert_num's lowest searched value, so every sample is valid
    )
    smooth_step_gamma: float = setting(
        1.0, "gamma, the width of the smooth-step's cubic region around 0 (dselectk)", above=0, search=search_range(0.1, 10.0, log=True)
    )
    entropy_weight: float | None = setting(
        None,
        "weight of the selectors' entropy, summed over tasks and selectors, a batch mean with example gates; none: the "
        "authors' weight, 2e-3 with example gates (their 1e-6 summed over 2,000 rows), 1e-6 with task gates (dselectk)",
        minimum=0,
        search=search_range(1e-6, 1e-1, log=True),
    )
    unreachable_weight: float | None = setting(
        None,
        "weight of the term that keeps selectors off unreachable codes when expert_num is not a power of 2; none: the "
        "authors' weight, 2000 with example gates (their 1 summed over 2,000 rows), 1 with task gates (dselectk)",
        minimum=0,
    )
    gate_conditioning: str = setting(
        "example", "what the gates read: each example's field embeddings, or nothing (one static gate per task) (dselectk)",
        choices=("example", "task"), search=search_choices("example", "task"),
    )

    def check(self) -> None:
        # An unset weight becomes its default for the gates' conditioning, so the configuration a
        # run records holds the number used.
        if self.entropy_weight is None:
            object.__setattr__(self, "entropy_weight", DEFAULT_ENTROPY_WEIGHT[self.gate_conditioning])
        if self.unreachable_weight is None:
            object.__setattr__(self, "unreachable_weight", DEFAULT_UNREACHABLE_WEIGHT[self.gate_conditioning])
        if self.expert_num < 2:
            raise ConfigError(f"expert_num (--expert-num) must be at least 2 for DSelect-k, got {self.expert_num}")
        if self.selected_experts > self.expert_num:
            raise ConfigError(
                f"selected_experts (--selected-experts) must be at most expert_num ({self.expert_num}), got {self.selected_experts}"
            )


def smooth_step(t: torch.Tensor, gamma: float) -> torch.Tensor:
    """0 for ``t <= -gamma/2``, 1 for ``t >= gamma/2``, ``-2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2`` between."""
    cubic = -2.0 / gamma**3 * t**3 + 1.5 / gamma * t + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), cubic))


def binary_codes(expert_num: int) -> torch.Tensor:
    """(n, m) bool: row ``i`` is ``i`` in ``m = ceil(log2 n)`` binary digits, most significant first."""
    width = math.ceil(math.log2(expert_num))
    return torch.tensor([[bool(i >> (width - 1 - j) & 1) for j in range(width)] for i in range(expert_num)])


def selector_outputs(z: torch.Tensor, codes: torch.Tensor, gamma: float) -> torch.Tensor:
    """(..., k, m) selector logits -> (..., k, n) single-expert selectors
    ``r(z)_i = prod_j (S(z_j) if bit j of i else 1 - S(z_j))``."""
    s = smooth_step(z, gamma).unsqueeze(-2)  # (..., k, 1, m)
    return torch.where(codes, s, 1 - s).prod(-1)  # (..., k, n)


@register_model("dselectk")
class DSelectK(MultiTaskModel):
    """``expert_num`` shared experts; each task mixes at most k of them through a DSelect-k gate.

    Contract, per task with ``n`` experts, ``m = ceil(log2 n)``, ``k`` selectors with logits
    ``z^(i)`` in R^m and selector weights ``w`` in R^k (both ``W x + b`` of the field embeddings
    ``x``, or free parameters with ``gate_conditioning="task"``)::

        S(t) = 0 if t <= -gamma/2;  1 if t >= gamma/2;  -2 t^3/gamma^3 + 3 t/(2 gamma) + 1/2 otherwise
        r(z)_l = prod_j [S(z_j) if bit j of l is 1 else 1 - S(z_j)]     a distribution over the 2^m codes
        q = sum_i softmax(w)_i r(z^(i))                                 the gate, at most k nonzeros
        y_t = tower_t( sum_l q_l E_l(x) )

    Once every ``|z_j| >= gamma/2``, each ``r`` is one-hot: exactly zero on all but one expert.
    The auxiliary loss, over the selectors the gates computed (one set per row with example
    gates, averaged over the batch; one set per step with task gates), is::

        entropy_weight * sum_{t, i} H(r(z^(i)))  +  unreachable_weight * sum_{t, i} (1 / sum_{l < n} r_l - 1)

    with ``H(r) = -sum_l r_l log(r_l + 1e-6)``, which pushes the selectors to binary; the second
    term, only when ``n`` is not a power of two, keeps a selector off the unreachable codes
    ``l >= n`` (the authors' ``1 / sum``, less the constant 1 so that it is 0, not 1, once a
    selector is on reachable codes: the same gradient).

    Decisions: defaults are the authors' code's (``smooth_step_gamma`` 1, z initialised uniform in
    +-gamma/100, w in +-0.05, k = 2 as their example). Their regularisers are sums over every
    selector computed, with weights 1e-6 (their ``EntropyRegularizer``'s default; the gate has
    none unless given one) and 1: with example gates that is a sum over the batch, here a batch
    mean, so the default weights are theirs at a batch of 2,000 rows (2e-3 and 2000: at this
    library's 2048, 0.98e-6 and 0.98 per row); with task gates there is no batch factor and the
    defaults are theirs (1e-6 and 1). A batch mean keeps the weights independent of the batch
    size and of the number of processes. Example-conditioned gates by default (they replace
    MMoE's per-example softmax gates); all tasks' gates are one linear product.

    Reference: Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong, Chi, "DSelect-k:
    Differentiable Selection in the Mixture of Experts with Applications to Multi-Task Learning",
    NeurIPS 2021. https://arxiv.org/abs/2106.03760
    """

    Config = DSelectKConfig
    paper = (
        "Hazimeh et al., DSelect-k: Differentiable Selection in the Mixture of Experts with Applications to Multi-Task Learning, "
        "NeurIPS 2021"
    )

    def __init__(self, schema: FeatureSchema, config: DSelectKConfig | None = None):
        super().__init__(schema, config)
        c = self.config
        t, k, gamma = self.task_num, c.selected_experts, c.smooth_step_gamma
        self.register_buffer("codes", binary_codes(c.expert_num), persistent=False)  # (n, m)
        m = self.codes.shape[1]
        self.embedding = FieldEmbedding.from_schema(schema, c.embed_dim)
        self.experts = MLPBank(self.embedding.output_dim, c.bottom_dims, c.expert_num, c.dropout)
        if c.gate_conditioning == "example":
            self.gate = nn.Linear(self.embedding.output_dim, t * k * (m + 1))  # z of every task and selector, then w
            with torch.no_grad():
                for part, bound in ((slice(0, t * k * m), gamma / 100), (slice(t * k * m, None), 0.05)):
                    self.gate.weight[part].uniform_(-bound, bound)
                    self.gate.bias[part].uniform_(-bound, bound)
        else:
            self.z = nn.Parameter(torch.empty(t, k, m).uniform_(-gamma / 100, gamma / 100))
            self.w = nn.Parameter(torch.empty(t, k).uniform_(-0.05, 0.05))
        self.towers = MLPBank(c.bottom_dims[-1], c.tower_dims, t, c.dropout, output_layer=True)

    def selectors(self, emb) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat field embeddings -> (B, T, k, n) selectors ``r(z^(i))`` and (B, T, k) weights ``softmax(w)``."""
        t, k, m = self.task_num, self.config.selected_experts, self.codes.shape[1]
        if self.config.gate_conditioning == "example":
            out = input_linear(emb, self.gate.weight.t(), self.gate.bias)  # (B, T k (m + 1))
            z = out[:, : t * k * m].unflatten(1, (t, k, m))  # (B, T, k, m)
            w = out[:, t * k * m :].unflatten(1, (t, k))  # (B, T, k)
        else:
            batch_size = emb.batch_size
            z, w = self.z.expand(batch_size, -1, -1, -1), self.w.expand(batch_size, -1, -1)  # (B, T, k, m), (B, T, k)
        # The gate's arithmetic in at least float32 (bfloat16 would blur the exact zeros and ones).
        precision = torch.promote_types(z.dtype, torch.float32)
        return selector_outputs(z.to(precision), self.codes, self.config.smooth_step_gamma), torch.softmax(w.to(precision), dim=-1)

    def _logits_and_selectors(
        self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) logits and the (B, T, k, n) selectors they were mixed with."""
        emb = self.embedding.flat(categorical, numerical, bags)  # (B, E * D), multiplied field by field
        selectors, weights = self.selectors(emb)  # (B, T, k, n), (B, T, k)
        gates = (weights.unsqueeze(-1) * selectors).sum(2)  # (B, T, n)
        task_fea = mix(gates, self.experts(emb))  # (B, T, H)
        return self.towers(task_fea).squeeze(-1), selectors  # (B, T)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, F) int64 ids, (B, M) floats, K bags -> (B, T) logits."""
        return self._logits_and_selectors(categorical, numerical, bags)[0]

    def gates(self, categorical: torch.Tensor, numerical: torch.Tensor, bags: Sequence[Bag] = ()) -> torch.Tensor:
        """(B, T, n) each task's weights over the experts: at most k nonzero, summing to 1 (n a power of 2)."""
        selectors, weights = self.selectors(self.embedding.flat(categorical, numerical, bags))
        return (weights.unsqueeze(-1) * selectors).sum(2)

    def regularizer(self, selectors: torch.Tensor) -> torch.Tensor:
        """() the auxiliary loss of (B, T, k, n) selectors (see the class docstring)."""
        c = self.config
        if c.gate_conditioning == "task":
            selectors = selectors[:1]  # the same on every row: computed once per step
        entropy = -(selectors * torch.log(selectors + ENTROPY_EPSILON)).sum(-1)  # (B, T, k)
        total = c.entropy_weight * entropy.mean(0).sum()
        if self.codes.shape[0] != 2 ** self.codes.shape[1]:
            total = total + c.unreachable_weight * (1.0 / selectors.sum(-1) - 1.0).mean(0).sum()
        return total

    def task_losses(self, batches: Sequence[Batch]) -> TaskLosses:
        """(T,) BCE per task and the selectors' regulariser as the auxiliary term, averaged over ``batches``."""
        tasks, auxiliary = [], []
        for batch in batches:
            logits, selectors = self._logits_and_selectors(batch.categorical, batch.numerical, batch.bags)
            tasks.append(self.batch_task_loss(logits, batch))
            auxiliary.append(self.regularizer(selectors))
        return TaskLosses(torch.stack(tasks).mean(0), torch.stack(auxiliary).mean())
