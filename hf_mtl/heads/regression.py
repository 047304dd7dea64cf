"""Real-valued targets (STS-B similarity, ratings)."""

import torch
from torch import nn

from ..errors import LabelError
from .base import PooledHead
from .registry import HEADS


@HEADS.register("regression")
class RegressionHead(PooledHead):
    """One float per row; mean-squared-error loss. Logits come back as `[batch]`."""

    task_type = "regression"

    def forward(self, hidden_states, attention_mask, batch_size):
        return super().forward(hidden_states, attention_mask, batch_size).squeeze(-1)

    def labels_from_padded(self, padded, input_shape):
        return padded if padded.dim() == 1 else padded[:, 0]

    def compute_loss(self, logits, labels):
        return nn.functional.mse_loss(logits, labels.to(logits.dtype))

    def check_labels(self, labels: torch.Tensor, input_shape: torch.Size) -> None:
        batch_size = input_shape[0]
        if labels.shape != (batch_size,):
            raise LabelError(
                f"Task {self.task_name!r}: expected regression targets of shape ({batch_size},), got {tuple(labels.shape)}."
            )
        if not torch.isfinite(labels.float()).all():
            raise LabelError(f"Task {self.task_name!r}: regression targets must be finite numbers (found NaN or inf).")
