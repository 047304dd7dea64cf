"""Task types as data: what each type asks of a `TaskSpec` (label names, how many outputs), one descriptor per type in
`TASK_TYPES`, below the heads (transformers keeps `problem_type` as data in the config, not in the model class).

A head (`hf_mtl.heads`) implements a type; its `validate_task` / `num_outputs` read the descriptor, so `TaskSpec`
never imports a head. A new task type is a descriptor here plus a head registered under the same key.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from ..errors import TaskError
from ..utils.registry import Registry


class TaskFields(Protocol):
    """The fields of a `TaskSpec` that the label rules read."""

    name: str
    type: str
    labels: list[str] | None


POOLING_CHOICES = ("cls", "mean", "attention")

TASK_TYPES: Registry[type[TaskType]] = Registry("task type")
"""Task type -> its descriptor. Keys are the `TaskSpec.type` values (and the `HEADS` keys)."""


class TaskType:
    """The label rules of a task type.

    - `requires_labels`: the spec must name its labels, at least `min_labels` of them.
    - `num_outputs(task)`: width of the head's output (one logit per label unless overridden).
    """

    name: ClassVar[str] = ""
    requires_labels: ClassVar[bool] = True
    min_labels: ClassVar[int] = 2

    @classmethod
    def validate(cls, task: TaskFields) -> None:
        """Raise `TaskError` if the spec cannot describe a task of this type."""
        if cls.requires_labels and (not task.labels or len(task.labels) < cls.min_labels):
            raise TaskError(
                f"Task {task.name!r} of type {task.type!r} needs `labels` with at least {cls.min_labels} label "
                f"name(s), got {task.labels!r}."
            )

    @classmethod
    def num_outputs(cls, task: TaskFields) -> int:
        return len(task.labels)


@TASK_TYPES.register("sequence_classification")
class SequenceClassification(TaskType):
    """One label per row (a sentence pair is this type with two text columns)."""

    name = "sequence_classification"


@TASK_TYPES.register("multi_label_classification")
class MultiLabelClassification(TaskType):
    """Any number of labels per row, one independent logit each."""

    name = "multi_label_classification"
    min_labels = 1


@TASK_TYPES.register("regression")
class Regression(TaskType):
    """One real value per row; `labels` may name it (a one-element list) or be omitted."""

    name = "regression"
    requires_labels = False

    @classmethod
    def validate(cls, task):
        if task.labels is not None and len(task.labels) != 1:
            raise TaskError(
                f"Task {task.name!r} of type 'regression' predicts one value: `labels` may name it "
                f"(a one-element list) or be omitted, got {task.labels!r}."
            )

    @classmethod
    def num_outputs(cls, task):
        return 1


@TASK_TYPES.register("token_classification")
class TokenClassification(TaskType):
    """One label per word (BIO tags and the like)."""

    name = "token_classification"
    min_labels = 1


@TASK_TYPES.register("multiple_choice")
class MultipleChoice(TaskType):
    """One score per choice; the answer is the index of a choice, so labels are optional."""

    name = "multiple_choice"
    requires_labels = False

    @classmethod
    def num_outputs(cls, task):
        return 1
