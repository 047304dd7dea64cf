"""`TaskSpec`: what the model needs to know about one task (name, type, label names).

Specs are stored in `MultiTaskConfig.tasks` as plain dicts (a list, so the order is kept: task
indices in `task_ids` refer to it), and come back as `TaskSpec` objects through `config.task_specs`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import TaskError
from .types import POOLING_CHOICES, TASK_TYPES


_TASK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass
class TaskSpec:
    """One task of a multi-task model.

    Args:
        name (`str`):
            Unique task name: letters, digits, `_` and `-`, starting with a letter or `_` (it becomes a
            module name, `heads.<name>`, and a metric prefix, `eval_<name>_accuracy`).
        type (`str`):
            The task type, in Transformers' words: `sequence_classification` (one sentence, or a sentence
            pair with two text columns), `multi_label_classification`, `regression`,
            `token_classification` or `multiple_choice`.
        labels (`list[str]`, *optional*):
            Label names, in label-id order (`id2label[i] == labels[i]`). Required for the classification
            types; for `regression` an optional one-element list naming the target.
        text_columns (`list[str]`, *optional*):
            Dataset columns holding the input text (two for a sentence pair). Defaults depend on the type
            (`["text"]`, `["tokens"]` for token classification).
        label_column (`str`, *optional*):
            Dataset column holding the label. Defaults to `"label"` (`"tags"` for token classification).
        metric (`str`, *optional*):
            Main metric of the task (e.g. `"accuracy"`, `"f1"`, `"mcc"`, `"pearson"`, `"seqeval_f1"`);
            `None` picks the type's default.
        pooling (`str`, *optional*):
            How this task's head pools token states (`"cls"`, `"mean"`, `"attention"`); `None` follows
            `MultiTaskConfig.pooling`. Token-level heads do not pool.
        input_group (`str`, *optional*):
            Tasks with the same input group label the same rows (e.g. ATIS intent and slots): training reads each
            row once, one encoder pass scoring every head of the group (JointBERT-style, see `hf_mtl.data.joint`).
    """

    name: str
    type: str
    labels: list[str] | None = None
    text_columns: list[str] | None = None
    label_column: str | None = None
    metric: str | None = None
    pooling: str | None = None
    input_group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not _TASK_NAME.match(self.name):
            raise TaskError(
                f"Invalid task name {self.name!r}: use letters, digits, '_' or '-', starting with a letter or '_' "
                "(e.g. 'sst2', 'ner_conll')."
            )
        if self.labels is not None:
            if isinstance(self.labels, str) or not all(isinstance(label, str) for label in self.labels):
                raise TaskError(
                    f"Task {self.name!r}: `labels` must be a list of label names (strings), got {self.labels!r}."
                )
            self.labels = list(self.labels)
            duplicates = sorted({label for label in self.labels if self.labels.count(label) > 1})
            if duplicates:
                raise TaskError(f"Task {self.name!r}: duplicate label names {duplicates}; each label must be unique.")
        if self.text_columns is not None:
            if isinstance(self.text_columns, str):
                self.text_columns = [self.text_columns]
            self.text_columns = list(self.text_columns)
        if self.pooling is not None and self.pooling not in POOLING_CHOICES:
            raise TaskError(
                f"Task {self.name!r}: unknown pooling {self.pooling!r}. Choose one of: {', '.join(POOLING_CHOICES)} "
                "(or leave it unset to follow the model's `pooling`)."
            )

        if self.type not in TASK_TYPES:
            raise TaskError(f"Task {self.name!r}: {TASK_TYPES.unknown_message(self.type)}")
        TASK_TYPES.get(self.type).validate(self)

    @classmethod
    def from_any(cls, task: TaskSpec | dict[str, Any]) -> TaskSpec:
        """Accepts a `TaskSpec` or a dict with the same keys (as stored in a config or written in a recipe)."""
        if isinstance(task, TaskSpec):
            return task
        if not isinstance(task, dict):
            raise TaskError(f"A task is a TaskSpec or a dict with 'name' and 'type', got {type(task).__name__}: {task!r}.")
        missing = [key for key in ("name", "type") if key not in task]
        if missing:
            raise TaskError(f"Task {task!r} is missing {missing}: every task needs a 'name' and a 'type'.")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(task) - known)
        if unknown:
            raise TaskError(
                f"Task {task.get('name')!r} has unknown keys {unknown}; known keys: {', '.join(sorted(known))}."
            )
        return cls(**task)

    @property
    def num_labels(self) -> int:
        """Width of the head's output (1 for regression and multiple choice)."""
        return TASK_TYPES.get(self.type).num_outputs(self)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels or []))

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels or [])}

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value not in (None, {})}


def check_unique_names(tasks: list[TaskSpec]) -> None:
    names = [task.name for task in tasks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TaskError(f"Duplicate task names {duplicates}: every task needs its own name.")


def input_group_leaders(tasks: list) -> dict[str, str]:
    """Each task's encoder task: itself, or for a member of an `input_group` the group's leader (its first
    token-level member, else its first member). Training reads a group's rows once, as the leader's rows with the
    leader's task id (`hf_mtl.data.joint`), so evaluation and prediction must encode every member as the leader too:
    under per-task encoder parts (LoRA adapters, task embeddings, hierarchical groups) a member's own part never
    trains. `tasks`: anything with `name`, `type` and `input_group` (task specs, recipe task entries)."""
    groups: dict[str, list] = {}
    for task in tasks:
        if getattr(task, "input_group", None) is not None:
            groups.setdefault(task.input_group, []).append(task)
    leaders = {task.name: task.name for task in tasks}
    for members in groups.values():
        tokens = [task for task in members if task.type == "token_classification"]
        leader = (tokens or members)[0].name
        leaders.update({task.name: leader for task in members})
    return leaders
