"""Data side of multi-task training: per-task preprocessing, the multi-task dataset and collator, joint-label
streams, augmentation and the generated demo data (`demo_data`)."""

from .collator import MultiTaskCollator
from .dataset import MultiTaskDataset
from .preprocessing import (
    DEFAULT_TEXT_COLUMNS,
    MODEL_INPUTS,
    DataError,
    check_columns,
    encode_labels,
    is_preprocessed,
    label_column,
    preprocess_task,
    text_columns,
)


__all__ = [
    "DEFAULT_TEXT_COLUMNS",
    "MODEL_INPUTS",
    "DataError",
    "MultiTaskCollator",
    "MultiTaskDataset",
    "check_columns",
    "encode_labels",
    "is_preprocessed",
    "label_column",
    "preprocess_task",
    "text_columns",
]
