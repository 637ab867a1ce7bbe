"""mtreclib: multi-task recommendation models in PyTorch."""

import importlib.metadata

from mtreclib.api import Model, TrainedRun, load, train
from mtreclib.core.schema import Batch, FeatureSchema
from mtreclib.models import create_model, list_models, register_model

__all__ = ["Batch", "FeatureSchema", "Model", "TrainedRun", "create_model", "list_models", "load", "register_model", "train"]
try:
    __version__ = importlib.metadata.version("mtreclib")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
