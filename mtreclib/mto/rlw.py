"""Random loss weighting: fresh random weights every step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mtreclib.core.settings import Settings, search_choices, setting
from mtreclib.models.base import TaskLosses
from mtreclib.mto.base import StepContext, Strategy, new_seed, step_generator
from mtreclib.mto.registry import register_strategy


@dataclass(frozen=True)
class RLWConfig(Settings):
    """RLW's settings: softmax of standard normal draws, the paper's (and LibMTL's) main choice."""

    rlw_distribution: str = setting(
        "normal", "RLW's weights: softmax of normal or of uniform draws, or a flat Dirichlet draw (rlw)",
        choices=("normal", "uniform", "dirichlet"), search=search_choices("normal", "uniform", "dirichlet"),
    )  # fmt: skip


@register_strategy("rlw")
class RandomLossWeights(Strategy):
    """Random loss weighting: weights drawn afresh on the simplex every step.

    ``L = sum_t w_t L_t`` with ``w`` drawn afresh each step on the simplex: ``softmax(z)``,
    ``z ~ N(0, I)`` by default. In expectation every task is weighted alike; the paper finds this
    as good as most learned weightings.

    The draws come from a generator seeded by the run and the step: the same on every rank and
    after a resume.

    Reference: Lin, Ye, Xu, Shi, Zhang, "Reasonable Effectiveness of Random Weighting: A Litmus
    Test for Multi-Task Learning", TMLR 2022. https://arxiv.org/abs/2111.10603
    """

    Config = RLWConfig

    def __init__(self, task_num: int, config: RLWConfig | None = None):
        super().__init__(task_num, config)
        self.register_buffer("seed", new_seed())

    def combine(self, losses: TaskLosses, context: StepContext) -> torch.Tensor:
        generator = step_generator(self, self.seed, context)
        distribution = self.config.rlw_distribution
        if distribution == "dirichlet":
            draws = -torch.rand(self.task_num, generator=generator, dtype=torch.float64).log()  # Exp(1): Dirichlet(1) once normalised
            weights = draws / draws.sum()
        else:
            draws = torch.randn if distribution == "normal" else torch.rand
            weights = torch.softmax(draws(self.task_num, generator=generator, dtype=torch.float64), dim=0)
        return self.weighted(losses, weights.to(losses.tasks.device))
