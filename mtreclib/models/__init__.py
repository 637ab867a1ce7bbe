"""The models. Importing this package registers every one of them."""

# Imported in the original MTReclib's order, which is the order `mtrec models` lists.
from mtreclib.models import singletask, sharedbottom, omoe, mmoe, ple, aitm, metaheac  # noqa: F401, I001
# Group A of the newer models (models-a).
from mtreclib.models import esmm, escm2, cgc, crossstitch, dselectk, dbmtl  # noqa: F401, I001
# Embedding, fusion and personalisation models after 2021 (group b).
from mtreclib.models import stem, adatt, pepnet, home  # noqa: F401, I001
from mtreclib.models.base import MultiTaskModel, TaskLosses, multitask_bce, task_bce
from mtreclib.models.config import ExpertConfig, ModelConfig
from mtreclib.models.registry import (
    UnknownModelError,
    create_model,
    document_models,
    list_models,
    model_class,
    model_config,
    model_kwargs,
    model_settings,
    register_model,
)

document_models()

__all__ = [
    "ExpertConfig",
    "ModelConfig",
    "MultiTaskModel",
    "TaskLosses",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_class",
    "model_config",
    "model_kwargs",
    "model_settings",
    "multitask_bce",
    "register_model",
    "task_bce",
]
