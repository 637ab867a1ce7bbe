"""MetaBalance: move the auxiliary tasks' gradient magnitudes toward the target task's, per shared parameter."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtreclib.core.settings import ConfigError, search_range, setting
from mtreclib.mto.base import StepContext
from mtreclib.mto.gradients import GradientConfig, GradientLayout, GradientStrategy
from mtreclib.mto.registry import register_strategy


@dataclass(frozen=True)
class MetaBalanceConfig(GradientConfig):
    """MetaBalance's settings: the authors' relax factor 0.7 and moving average 0.9; the first task is the target, as in their code."""

    metabalance_target: int = setting(0, "index of the target task, whose gradient magnitude the others are moved toward (metabalance)", minimum=0)
    metabalance_relax: float = setting(
        0.7, "relax factor r: 0 keeps the auxiliary gradients, 1 gives them the target's magnitude (metabalance)", minimum=0, maximum=1,
        search=search_range(0.0, 1.0),
    )
    metabalance_beta: float = setting(
        0.9, "moving-average coefficient of the gradient magnitudes (metabalance)", minimum=0, below=1, search=search_range(0.5, 0.99)
    )


@register_strategy("metabalance")
class MetaBalance(GradientStrategy):
    """MetaBalance: the auxiliary tasks' gradient magnitudes moved toward the target task's, per shared parameter.

    For every shared parameter ``k`` and auxiliary task ``i``, with moving averages of the
    gradient magnitudes ``m_{t,k} <- beta m_{t,k} + (1 - beta) |g_{t,k}|``:
    ``g_{i,k} <- g_{i,k} (r m_{tar,k} / m_{i,k} + 1 - r)``. The shared update is
    ``(g_tar + sum_i g_i) / T`` (``/ T``: equal weighting's scale); task-specific parameters and
    owned elements take their own task's gradient, as in the paper (only shared layers are
    balanced). Magnitudes are over each parameter's shared elements. The recorded weight of an
    auxiliary task is the factor its whole shared gradient's norm was multiplied by.

    Reference: He, Feng, Cheng, Ji, Guo, Caverlee, "MetaBalance: Improving Multi-Task
    Recommendations via Adapting Gradient Magnitudes of Auxiliary Tasks", WWW 2022.
    https://arxiv.org/abs/2203.06801
    """

    Config = MetaBalanceConfig

    def __init__(self, task_num: int, config: MetaBalanceConfig | None = None):
        super().__init__(task_num, config)
        if self.config.metabalance_target >= task_num:
            raise ConfigError(f"metabalance_target (--metabalance-target) must name one of the {task_num} tasks (0-based), got {self.config.metabalance_target}")
        # (T, shared parameters), sized at the first step: how many parameters are shared is the model's.
        self.register_buffer("magnitudes", torch.zeros(0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "magnitudes")
        if saved is not None:
            self.magnitudes = torch.zeros(saved.shape, device=self.last_weights.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def update(self, matrix: torch.Tensor, layout: GradientLayout, losses: torch.Tensor, context: StepContext) -> torch.Tensor:
        task_num, size, target = self.task_num, layout.shared_size, self.config.metabalance_target
        shared = matrix[:, :size]  # (T, S)
        segments = layout.segments()  # (S,)
        squares = matrix.new_zeros(task_num, layout.shared_count).index_add_(1, segments, shared.square())  # (T, K)
        if layout.owned is not None:
            owned = shared.index_select(1, layout.owned)  # (T, O)
            squares.index_add_(1, segments[layout.owned], -owned.square())
        norms = squares.clamp_min(0).sqrt()  # (T, K) each task's magnitude on each parameter's shared elements
        if self.magnitudes.shape != norms.shape:
            self.magnitudes = torch.zeros_like(norms)
        beta, relax = self.config.metabalance_beta, self.config.metabalance_relax
        self.magnitudes.mul_(beta).add_(norms, alpha=1 - beta)
        scales = relax * self.magnitudes[target] / (self.magnitudes + 1e-12) + (1 - relax)  # (T, K)
        scales[target] = 1.0
        update = torch.empty(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
        update[:size] = 0.0
        for t in range(task_num):  # over tasks, not parameters: one (S,) gather each
            update[:size].addcmul_(scales[t].index_select(0, segments), shared[t])
        update[:size] /= task_num
        own = torch.full((task_num,), 1.0 / task_num, dtype=matrix.dtype, device=matrix.device)
        torch.mv(matrix[:, size:].T, own, out=update[size:])
        if layout.owned is not None:
            update[:size].index_copy_(0, layout.owned, own @ owned)
        effective = ((scales * norms).square().sum(1) / norms.square().sum(1).clamp_min(1e-30)).sqrt()
        self.last_weights.copy_(torch.where(norms.square().sum(1) > 0, effective, torch.ones_like(effective)))
        return update
