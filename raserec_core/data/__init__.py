"""Data: readers, k-core, leave-one-out split, the dataset artifact and batching."""

from ..errors import DataError
from .artifact import SeqDataset, read_dataset, write_dataset
from .preprocess import build_dataset
from .readers import read_interactions
from .split import SPLITS, Instances

__all__ = [
    "SPLITS",
    "DataError",
    "Instances",
    "SeqDataset",
    "build_dataset",
    "read_dataset",
    "read_interactions",
    "write_dataset",
]
