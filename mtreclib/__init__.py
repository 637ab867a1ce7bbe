"""mtreclib: multi-task recommendation models in PyTorch."""

from mtreclib.models import create_model, list_models, register_model
from mtreclib.schema import Batch, FeatureSchema

__all__ = ["Batch", "FeatureSchema", "create_model", "list_models", "register_model"]
__version__ = "0.1.0"
