"""Hyperparameters shared by the models, as typed settings; each model extends them with its own.

The defaults are the original MTReclib's: embed 128, bottom/expert MLP (512, 256), towers
(128, 64) then a Linear to one logit, dropout 0.2, 8 experts.
"""

from __future__ import annotations

from dataclasses import dataclass

from mtreclib.core.settings import Settings, search_choices, search_range, setting


@dataclass(frozen=True)
class ModelConfig(Settings):
    """What every model takes."""

    embed_dim: int = setting(128, "embedding size of every field", minimum=1, search=search_choices(16, 32, 64, 128))
    bottom_dims: tuple[int, ...] = setting(
        (512, 256), "widths of the bottom, expert or per-level MLP layers", minimum=1, nonempty=True,
        search=search_choices((128, 64), (256, 128), (512, 256)),
    )
    tower_dims: tuple[int, ...] = setting(
        (128, 64), "widths of each task tower's hidden layers (none: a Linear to the logit)", minimum=1,
        search=search_choices((64, 32), (128, 64), (256, 128)),
    )
    dropout: float = setting(0.2, "dropout after every hidden layer", minimum=0, below=1, search=search_range(0.0, 0.5))


@dataclass(frozen=True)
class ExpertConfig(ModelConfig):
    """Models with a pool of experts."""

    expert_num: int = setting(8, "experts", minimum=1, search=search_range(2, 12, step=2))
