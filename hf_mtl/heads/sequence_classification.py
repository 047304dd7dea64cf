"""Single-label classification of a sentence or a sentence pair (SST-2, MNLI, intent detection)."""

import torch
from torch import nn

from ..errors import LabelError
from .base import PooledHead
from .registry import HEADS


@HEADS.register("sequence_classification")
class SequenceClassificationHead(PooledHead):
    """One label per row; cross-entropy loss. Labels: `torch.long` class ids `[batch]`, -100 ignores a row."""

    task_type = "sequence_classification"
    smoothable = True

    def compute_loss(self, logits, labels):
        return nn.functional.cross_entropy(logits, labels.long(), ignore_index=-100, label_smoothing=self._smoothing())

    def check_labels(self, labels: torch.Tensor, input_shape: torch.Size) -> None:
        batch_size = input_shape[0]
        if labels.shape != (batch_size,):
            raise LabelError(
                f"Task {self.task_name!r}: expected labels of shape ({batch_size},) (one class id per row), "
                f"got {tuple(labels.shape)}."
            )
        self._check_class_ids(labels)
