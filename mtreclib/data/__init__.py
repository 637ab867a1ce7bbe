"""Datasets, the arrays they are held in, and batches cut from them."""

from mtreclib.data.datasets import Dataset, builtin_datasets, generated_dataset, load_dataset
from mtreclib.data.loader import BatchLoader
from mtreclib.data.table import MultiTaskTable, split_validation

__all__ = ["BatchLoader", "Dataset", "MultiTaskTable", "builtin_datasets", "generated_dataset", "load_dataset", "split_validation"]
