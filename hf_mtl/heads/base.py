"""What every task head shares: pooling, the dense classifier block, label checks, and the contract the model relies on.

A head turns the encoder's hidden states for its rows into logits and computes its loss. Variants that
differ only in their loss or label format subclass a head instead of growing a `problem_type` ladder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from ..errors import LabelError
from ..tasks.types import POOLING_CHOICES, TASK_TYPES


if TYPE_CHECKING:
    from ..tasks import TaskSpec




def pool(
    hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, mode: str, scorer: nn.Module | None = None
) -> torch.Tensor:
    """Sentence representation from token states: the first (`[CLS]`) token, the `mean` over non-padding tokens,
    or an `attention`-weighted sum (softmax over `scorer(h)` on non-padding tokens; a head owns its scorer).

    Callers without a scorer of their own (the task discriminator, expert gates) pool `attention` as `mean`.
    """
    if mode == "cls":
        return hidden_states[:, 0]
    if mode == "attention" and scorer is not None:
        scores = scorer(hidden_states).squeeze(-1).float()
        if attention_mask is not None:
            scores = scores.masked_fill(attention_mask == 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).to(hidden_states.dtype)
        return torch.einsum("bs,bsh->bh", weights, hidden_states)
    if mode in ("mean", "attention"):
        if attention_mask is None:
            return hidden_states.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    raise ValueError(f"Unknown pooling {mode!r}. Choose one of: {', '.join(POOLING_CHOICES)}.")


def _as_class_ids(labels: torch.Tensor) -> torch.Tensor:
    """Mixed-task label tensors are float (they carry regression targets too): whole numbers become class ids."""
    if labels.is_floating_point() and torch.equal(labels, labels.round()):
        return labels.long()
    return labels


class TaskHead(nn.Module):
    """Base class of all heads.

    Subclasses set `task_type` and implement `forward`, `compute_loss` and `check_labels`. Class flags tell the
    model how to route the head:

    - `per_token`: one prediction per token (labels `[batch, seq_len]`) instead of one per row.
    - `mixable`: the head can share a mixed-task batch (one encoder pass). Multiple choice cannot: its inputs
      are `[batch, num_choices, seq_len]`.
    - `smoothable`: its loss is a cross-entropy over classes, so `label_smoothing` (set by the trainer from
      `TrainingArguments.label_smoothing_factor`) applies to it in training mode.
    """

    task_type: ClassVar[str] = ""
    per_token: ClassVar[bool] = False
    mixable: ClassVar[bool] = True
    smoothable: ClassVar[bool] = False

    def __init__(self, task: TaskSpec, hidden_size: int, dropout: float, pooling: str):
        super().__init__()
        self.task_name = task.name
        self.num_labels = self.num_outputs(task)
        self.pooling = pooling
        self.label_smoothing = 0.0  # training configuration, not saved: the trainer sets it

    def _smoothing(self) -> float:
        """Label smoothing of the cross-entropy: training only (evaluation losses stay the plain cross-entropy)."""
        return self.label_smoothing if self.training else 0.0

    @classmethod
    def validate_task(cls, task: TaskSpec) -> None:
        """Raise `TaskError` if the spec cannot describe a task of this type (the rules are the type's descriptor)."""
        TASK_TYPES.get(cls.task_type).validate(task)

    @classmethod
    def num_outputs(cls, task: TaskSpec) -> int:
        return TASK_TYPES.get(cls.task_type).num_outputs(task)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        raise NotImplementedError

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_labels(self, labels: torch.Tensor, input_shape: torch.Size) -> None:
        """Raise `LabelError` naming the task and the bad value when labels do not fit this head.

        `input_shape` is the shape of this head's `input_ids` (`[batch, seq_len]`, or
        `[batch, num_choices, seq_len]` for multiple choice).
        """
        raise NotImplementedError

    def labels_from_padded(self, padded: torch.Tensor, input_shape: torch.Size) -> torch.Tensor:
        """This head's labels from its rows of a mixed-task label tensor (`[rows]` or `[rows, width]`, padded with -100)."""
        return _as_class_ids(padded if padded.dim() == 1 else padded[:, 0])

    def _check_class_ids(self, labels: torch.Tensor) -> None:
        if labels.is_floating_point() or labels.is_complex():
            raise LabelError(
                f"Task {self.task_name!r}: labels must be integer class ids (torch.long), got dtype {labels.dtype}."
            )
        valid = labels[labels != -100]
        if valid.numel() and (valid.min() < 0 or valid.max() >= self.num_labels):
            bad = valid[(valid < 0) | (valid >= self.num_labels)][0].item()
            raise LabelError(
                f"Task {self.task_name!r}: label {bad} is out of range; valid ids are 0..{self.num_labels - 1} "
                "(or -100 to ignore). Map label names with the task's label2id."
            )

    def extra_repr(self) -> str:
        return f"task={self.task_name!r}, num_labels={self.num_labels}, pooling={self.pooling!r}"


class PooledHead(TaskHead):
    """Pool -> dropout -> dense -> tanh -> dropout -> projection, as in `RobertaClassificationHead`.

    The dense block is per task, so each task has its own non-linear view of the shared sentence representation.
    With `pooling="attention"` the head also owns a one-unit scorer that learns which tokens its task reads.
    """

    def __init__(self, task: TaskSpec, hidden_size: int, dropout: float, pooling: str):
        super().__init__(task, hidden_size, dropout, pooling)
        self.dropout = nn.Dropout(dropout)
        self.attention_scorer = nn.Linear(hidden_size, 1) if pooling == "attention" else None
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, self.num_labels)

    def forward(self, hidden_states, attention_mask, batch_size):
        pooled = pool(hidden_states, attention_mask, self.pooling, self.attention_scorer)
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return self.out_proj(self.dropout(x))
