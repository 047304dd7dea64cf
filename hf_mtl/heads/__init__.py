"""Task heads, one file per task type, registered under the type name used in `TaskSpec.type`."""

from .base import POOLING_CHOICES, PooledHead, TaskHead, pool
from .multi_label_classification import MultiLabelClassificationHead
from .multiple_choice import MultipleChoiceHead
from .registry import HEADS
from .regression import RegressionHead
from .sequence_classification import SequenceClassificationHead
from .token_classification import TokenClassificationHead


__all__ = [
    "HEADS",
    "POOLING_CHOICES",
    "MultiLabelClassificationHead",
    "MultipleChoiceHead",
    "PooledHead",
    "RegressionHead",
    "SequenceClassificationHead",
    "TaskHead",
    "TokenClassificationHead",
    "pool",
]
