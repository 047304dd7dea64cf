"""Pick one of several candidate continuations or answers (SWAG, COPA, RACE)."""

import torch
from torch import nn

from ..errors import LabelError
from .base import PooledHead
from .registry import HEADS


@HEADS.register("multiple_choice")
class MultipleChoiceHead(PooledHead):
    """Scores each `(context, choice)` row and applies softmax across choices.

    Inputs are `[batch, num_choices, seq_len]`; the model flattens them to `[batch * num_choices, seq_len]` for
    the encoder, so this head cannot share a mixed-task batch. Labels are the index of the right choice.
    """

    task_type = "multiple_choice"
    smoothable = True
    mixable = False

    def forward(self, hidden_states, attention_mask, batch_size):
        scores = super().forward(hidden_states, attention_mask, batch_size)
        return scores.view(batch_size, -1)

    def compute_loss(self, logits, labels):
        return nn.functional.cross_entropy(logits, labels.long(), ignore_index=-100, label_smoothing=self._smoothing())

    def check_labels(self, labels: torch.Tensor, input_shape: torch.Size) -> None:
        batch_size, num_choices = input_shape[0], input_shape[1]
        if labels.shape != (batch_size,):
            raise LabelError(
                f"Task {self.task_name!r}: expected one choice index per row, shape ({batch_size},), got {tuple(labels.shape)}."
            )
        if labels.is_floating_point():
            raise LabelError(f"Task {self.task_name!r}: choice indices must be integers, got dtype {labels.dtype}.")
        valid = labels[labels != -100]
        if valid.numel() and (valid.min() < 0 or valid.max() >= num_choices):
            bad = valid[(valid < 0) | (valid >= num_choices)][0].item()
            raise LabelError(
                f"Task {self.task_name!r}: choice index {bad} is out of range for {num_choices} choices "
                f"(valid 0..{num_choices - 1})."
            )
