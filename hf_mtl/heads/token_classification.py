"""One label per token (NER, slot filling, POS). Labels are aligned to sub-words; -100 marks the rest."""

import torch
from torch import nn

from ..errors import LabelError
from .base import TaskHead, _as_class_ids
from .registry import HEADS


@HEADS.register("token_classification")
class TokenClassificationHead(TaskHead):
    """Dropout -> linear per token, as `BertForTokenClassification`; cross-entropy over non-ignored tokens."""

    task_type = "token_classification"
    smoothable = True
    per_token = True

    def __init__(self, task, hidden_size, dropout, pooling):
        super().__init__(task, hidden_size, dropout, pooling)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, self.num_labels)

    def forward(self, hidden_states, attention_mask, batch_size):
        return self.classifier(self.dropout(hidden_states))

    def compute_loss(self, logits, labels):
        # Mean over the labelled tokens, and 0 (not NaN) when a batch has none (e.g. rows with an empty word list).
        labels = labels.reshape(-1).long()
        total = nn.functional.cross_entropy(
            logits.reshape(-1, self.num_labels), labels, ignore_index=-100, reduction="sum", label_smoothing=self._smoothing()
        )
        return total / (labels != -100).sum().clamp(min=1)

    def labels_from_padded(self, padded, input_shape):
        return _as_class_ids(padded[:, : input_shape[-1]])

    def check_labels(self, labels: torch.Tensor, input_shape: torch.Size) -> None:
        batch_size, seq_len = input_shape[0], input_shape[-1]
        if labels.dim() != 2 or labels.shape[0] != batch_size or labels.shape[1] != seq_len:
            raise LabelError(
                f"Task {self.task_name!r}: expected token labels of shape ({batch_size}, {seq_len}) "
                f"aligned to the input ids (-100 on special tokens, padding and non-first sub-words), "
                f"got {tuple(labels.shape)}."
            )
        self._check_class_ids(labels)
