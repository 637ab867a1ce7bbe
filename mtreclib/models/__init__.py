"""The models. Importing this package registers every one of them."""

# Imported in the original MTReclib's order, which is the order `mtrec models` lists.
from mtreclib.models import singletask, sharedbottom, omoe, mmoe, ple, aitm, metaheac  # noqa: F401, I001
from mtreclib.models.base import MultiTaskModel, multitask_bce
from mtreclib.models.registry import UnknownModelError, create_model, list_models, model_class, model_kwargs, register_model

__all__ = [
    "MultiTaskModel",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_class",
    "model_kwargs",
    "multitask_bce",
    "register_model",
]
