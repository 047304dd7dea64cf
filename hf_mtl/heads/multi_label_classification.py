"""Several independent binary labels per row (topics, emotions, toxicity types)."""

import torch
from torch import nn

from ..errors import LabelError
from .base import PooledHead
from .registry import HEADS


@HEADS.register("multi_label_classification")
class MultiLabelClassificationHead(PooledHead):
    """Multi-hot targets `[batch, num_labels]` in [0, 1]; binary cross-entropy with logits."""

    task_type = "multi_label_classification"

    def compute_loss(self, logits, labels):
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))

    def labels_from_padded(self, padded, input_shape):
        return padded[:, : self.num_labels]

    def check_labels(self, labels: torch.Tensor, input_shape: torch.Size) -> None:
        batch_size = input_shape[0]
        if labels.shape != (batch_size, self.num_labels):
            raise LabelError(
                f"Task {self.task_name!r}: expected multi-hot labels of shape ({batch_size}, {self.num_labels}), "
                f"got {tuple(labels.shape)}."
            )
        values = labels.float()
        if (values < 0).any() or (values > 1).any():
            raise LabelError(f"Task {self.task_name!r}: multi-label targets must lie in [0, 1] (multi-hot).")
