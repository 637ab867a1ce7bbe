"""The configuration of a run, one frozen object per concern; defaults are the original MTReclib's.

``DataConfig`` (which data, which tasks, the validation split), ``TrainConfig`` (optimisation),
``RunConfig`` (where it runs and what it writes) and the model's own typed settings
(``model_class(name).Config``) and the optimisation strategy's (``strategy_class(name).Config``)
make an ``ExperimentConfig``. Flags, config files and the Python API all build these objects;
the defaults and checks below are the only ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mtreclib.core.settings import ConfigError, Settings, flag_name, search_range, setting
from mtreclib.models import model_class
from mtreclib.models.base import REGRESSION_LOSSES
from mtreclib.mto import strategy_class

PRECISIONS = ("fp32", "bf16")  # what a run computes in; a run's "auto" resolves to one of them
# Kept here rather than imported from mtreclib.embeddings: configuration is the base layer.
EMBEDDING_BACKENDS = ("dense", "torchrec")
EMBEDDING_OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd", "adam")
SHARDINGS = ("auto", "table_wise", "row_wise", "column_wise")
VALID_SPLITS = ("tail", "random")
OPTIMIZERS = ("adam", "adamw", "adagrad")
LR_SCHEDULES = ("constant", "warmup-cosine", "step")
SELECT_METRICS = ("auc", "gauc")
# The settings of one learning-rate schedule, refused with another when set.
SCHEDULE_SETTINGS = {"warmup_steps": "warmup-cosine", "lr_min": "warmup-cosine", "lr_step_epochs": "step", "lr_gamma": "step"}
# Where a setting may differ without changing what a run computes (``Meta.may_differ``, read by
# ``mtreclib.config.compare``): a resumed run may change how long it trains; it, and the runs of
# one results table, may change where and how visibly they run.
RESUME = "resume"
TABLE = "table"
WHERE = (RESUME, TABLE)


@dataclass(frozen=True)
class ModelChoice(Settings):
    """Which model a run trains (its own settings are ``model_class(model).Config``)."""

    model: str = setting("mmoe", "the model, by its registered name (mtrec models lists them)")


@dataclass(frozen=True)
class DataConfig(Settings):
    """Which dataset, which of its tasks, and how validation rows are chosen."""

    dataset: str = setting(
        "synthetic",
        "a built-in dataset, a folder DATA_DIR/NAME (with a dataset.yaml, or train.csv and test.csv in the "
        "AliExpress processed layout), or the path of a dataset spec (.yaml)",
    )
    data_dir: str = setting("data", "where dataset folders live", may_differ=WHERE)
    cache_dir: str | None = setting(
        None,
        "where the datasets' encoded caches go; none: beside each dataset's spec, or, when that folder cannot be written, "
        "the user's cache folder ($XDG_CACHE_HOME/mtreclib, else ~/.cache/mtreclib)",
        may_differ=WHERE,
    )
    tasks: tuple[str, ...] = setting((), "the tasks to train, by name, in order (default: the dataset's default tasks)")
    task_num: int | None = setting(None, "train only the first N of those tasks (default: all)", minimum=1)
    valid_fraction: float = setting(
        0.1, "share of the training split held out for validation when the dataset has no validation split", minimum=0, below=1
    )
    valid_split: str = setting(
        "tail",
        "tail: the last rows of the training split (files are in time order); random: a seeded random subset",
        choices=VALID_SPLITS,
    )
    gauc_group: str | None = setting(
        None,
        "the column whose groups (a user, a session) GAUC is computed within, in place of the dataset spec's group: "
        "(the cache is built again to carry it); none: the spec's group, if it names one",
    )


@dataclass(frozen=True)
class TrainConfig(Settings):
    """Optimisation: Adam as the original configures it (by default), early stopping on validation mean AUC (or GAUC)."""

    epochs: int = setting(50, "most epochs", minimum=1, may_differ=(RESUME,))
    batch_size: int = setting(
        2048, "rows per batch over all processes (the global batch, shared by the processes under torchrun)", minimum=2
    )
    lr: float = setting(
        1e-3, "the dense optimizer's learning rate (the peak of a schedule)", above=0, search=search_range(1e-4, 1e-2, log=True)
    )
    weight_decay: float = setting(
        1e-6, "adam, adagrad: an L2 term weight_decay * w added to the gradient; adamw: decoupled, w shrinks by lr * weight_decay each step", minimum=0,
        search=search_range(1e-8, 1e-4, log=True),
    )
    patience: int = setting(
        2, "stop after N epochs without a better validation score (--select-metric); 0 trains every epoch and keeps the last", minimum=0
    )
    select_metric: str = setting(
        "auc",
        "the validation score that picks the best epoch, stops early and ranks a study's trials: auc, the tasks' mean AUC; "
        "gauc, their mean GAUC (per group, weighted by impressions; needs a group column: the spec's group: or --gauc-group)",
        choices=SELECT_METRICS,
    )
    max_steps: int | None = setting(None, "stop after N optimizer steps", minimum=1, may_differ=(RESUME,))
    seed: int = setting(0, "seeds initialisation, shuffling and dropout", minimum=0)
    precision: str = setting(
        "fp32",
        "bf16: bfloat16 autocast for the forward passes; faster only where the hardware has native bf16 "
        "(recent GPUs, CPUs with AVX-512 BF16/AMX); auto: bf16 where a probe of this model's step on this machine finds it faster, "
        "else fp32 (the choice is saved with the run)",
        choices=(*PRECISIONS, "auto"),
    )
    compile: bool = setting(False, "run the model through torch.compile")
    threads: int | None = setting(
        None,
        "CPU threads for PyTorch, lower when other jobs share the CPU; none: PyTorch's choice (one per core)",
        minimum=1,
        may_differ=WHERE,
    )
    release_memory: bool = setting(
        False,
        "CPU: give freed memory back to the system at once (the C library's default); off, training and scoring keep it "
        "for the next step's tensors, sparing the page faults of fresh pages (a quarter of an MMoE step) for a little more memory",
        may_differ=WHERE,
    )
    sample_weights: bool = setting(False, "weigh each row's loss by the dataset's sample-weight column (when it has one)")
    mto: str = setting("ew", "multi-task optimisation strategy: how task losses and gradients are combined (mtrec strategies lists them)")
    embedding_backend: str = setting(
        "dense",
        "dense: every field's table an nn.Embedding trained by Adam (cost grows with the vocabulary); torchrec: TorchRec "
        "tables with a fused optimizer, sharded under torchrun (cost follows the batch; needs the torchrec extra)",
        choices=EMBEDDING_BACKENDS,
    )
    embedding_optimizer: str = setting(
        "rowwise_adagrad",
        "torchrec backend: the tables' fused optimizer (adam only on CUDA)",
        choices=EMBEDDING_OPTIMIZERS,
    )
    embedding_lr: float = setting(0.01, "torchrec backend: the tables' learning rate", above=0)
    sharding: str = setting(
        "auto",
        "torchrec backend under torchrun: how tables are split across processes (auto: TorchRec's planner chooses "
        "within each process's memory)",
        choices=SHARDINGS,
    )
    # The dense optimizer, its learning-rate schedule and gradient clipping (mtreclib.training.optim).
    optimizer: str = setting(
        "adam",
        "the dense parameters' optimizer, PyTorch's (on the torchrec backend the tables keep --embedding-optimizer)",
        choices=OPTIMIZERS,
    )
    lr_schedule: str = setting(
        "constant",
        "the learning rate per optimizer step: constant; warmup-cosine (a linear rise over --warmup-steps, then half a "
        "cosine from --lr down to --lr-min over the run's other steps); step (times --lr-gamma every --lr-step-epochs epochs)",
        choices=LR_SCHEDULES,
    )
    warmup_steps: int = setting(0, "warmup-cosine: optimizer steps of linear warm-up, step s at lr * (s + 1) / (warmup_steps + 1)", minimum=0)
    lr_min: float = setting(0.0, "warmup-cosine: the learning rate the cosine decays to (below --lr)", minimum=0)
    lr_step_epochs: int | None = setting(None, "step: epochs between two decays (--lr-schedule step needs it)", minimum=1)
    lr_gamma: float = setting(0.1, "step: the factor of each decay", above=0, maximum=1)
    clip_grad_norm: float | None = setting(
        None,
        "clip the model's gradients to this global L2 norm before each optimizer step, after the strategy has combined "
        "them (and the processes averaged them); none: no clipping",
        above=0,
    )
    # Regression tasks (a label's type: regression in the dataset spec); binary tasks keep BCE.
    regression_loss: str = setting(
        "mse", "the loss of regression tasks: mse, or huber (squared within --huber-delta of the target, linear beyond)", choices=REGRESSION_LOSSES
    )
    huber_delta: float = setting(1.0, "huber: where the loss turns from squared to linear, on the target's (transformed) scale", above=0)

    def check(self) -> None:
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for key, schedule in SCHEDULE_SETTINGS.items():
            if self.lr_schedule != schedule and getattr(self, key) != defaults[key]:
                raise ConfigError(
                    f"{key} ({flag_name(key)}) is a setting of --lr-schedule {schedule}, not of --lr-schedule {self.lr_schedule}"
                )
        if self.huber_delta != defaults["huber_delta"] and self.regression_loss != "huber":
            raise ConfigError(f"huber_delta (--huber-delta) is a setting of --regression-loss huber, not of --regression-loss {self.regression_loss}")
        if self.lr_schedule == "step" and self.lr_step_epochs is None:
            raise ConfigError("lr_step_epochs (--lr-step-epochs) must be set for --lr-schedule step: the epochs between two decays")
        if self.lr_min >= self.lr and self.lr_schedule == "warmup-cosine":
            raise ConfigError(f"lr_min (--lr-min) must be below lr (--lr) {self.lr:g}, got {self.lr_min:g}")


@dataclass(frozen=True)
class RunConfig(Settings):
    """Where the run happens and what it writes."""

    # A flag given without a value means this value.
    bare_flags: ClassVar[dict[str, str]] = {"resume": "last"}

    device: str = setting(
        "auto",
        "auto (CUDA if present, else CPU), cpu, cuda, cuda:N; under torchrun each process takes cuda:LOCAL_RANK",
        may_differ=WHERE,
    )
    save_dir: str = setting(
        "chkpt", "each run's checkpoints, configuration and results go to SAVE_DIR/DATASET_MODEL/run-N/", may_differ=WHERE
    )
    save: bool = setting(True, "keep no checkpoint files", flag="--no-save", may_differ=WHERE)
    results: str | None = setting(None, "also write the results as JSON to this file", may_differ=WHERE)
    progress: bool = setting(True, "no progress bars or per-epoch lines", flag="--no-progress", may_differ=WHERE)
    tensorboard: str | None = setting(
        None, "write TensorBoard logs (per-step loss, per-epoch metrics) under this folder", may_differ=WHERE
    )
    resume: str | None = setting(
        None,
        "continue an interrupted run from its last finished epoch, with the same settings (--epochs may be raised): "
        "the newest run of this model and dataset in --save-dir (--resume alone), or the run folder RESUME",
        may_differ=WHERE,
    )


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs.

    Attributes:
        model: a registered model name.
        model_config: that model's typed settings (``model_class(model).Config``); None means
            its defaults.
        data, train, run: the other concerns.
        mto_config: the strategy's typed settings (``strategy_class(train.mto).Config``); None
            means its defaults.
    """

    model: str = ModelChoice.model
    model_config: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    mto_config: Any = None

    def __post_init__(self) -> None:
        cls = model_class(self.model)
        if self.model_config is None:
            object.__setattr__(self, "model_config", cls.Config())
        elif isinstance(self.model_config, dict):
            object.__setattr__(self, "model_config", cls.Config.build(self.model_config, what=f"model {self.model}"))
        elif not isinstance(self.model_config, cls.Config):
            raise ConfigError(f"model {self.model} takes {cls.Config.__name__} settings, got {type(self.model_config).__name__}")
        strategy = strategy_class(self.train.mto)
        if self.mto_config is None:
            object.__setattr__(self, "mto_config", strategy.Config())
        elif isinstance(self.mto_config, dict):
            object.__setattr__(self, "mto_config", strategy.Config.build(self.mto_config, what=f"strategy {self.train.mto}"))

    def to_dict(self) -> dict[str, Any]:
        """Nested plain data (the form checkpoints and results carry; ``from_dict`` reads it)."""
        return {
            "model": self.model,
            "model_config": self.model_config.to_dict(),
            "data": self.data.to_dict(),
            "train": self.train.to_dict(),
            "run": self.run.to_dict(),
            "mto_config": self.mto_config.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        return cls(
            model=data["model"],
            model_config=dict(data.get("model_config", {})),
            data=DataConfig.build(dict(data.get("data", {}))),
            train=TrainConfig.build(dict(data.get("train", {}))),
            run=RunConfig.build(dict(data.get("run", {}))),
            mto_config=dict(data.get("mto_config", {})),
        )

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat key (the keys of flags and config files)."""
        nested = self.to_dict()
        flat: dict[str, Any] = {"model": self.model}
        for section in ("data", "train", "run", "model_config", "mto_config"):
            flat.update(nested[section])
        return flat

