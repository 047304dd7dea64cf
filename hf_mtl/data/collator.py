"""`MultiTaskCollator`: pads each task type's inputs and labels, for batches of one task or of several."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..tasks import TaskSpec
from .joint import JOINT_PREFIX
from .preprocessing import MODEL_INPUTS, DataError


class MultiTaskCollator:
    """Pads a list of features of one task (-> `task=<name>`) or of several (-> `task_ids`).

    Inputs are padded with the tokenizer's padding; labels per head type: token labels with -100 to the padded
    length; multiple-choice inputs `[batch, num_choices, seq_len]`. A mixed batch carries one label row per example,
    right-padded with -100 to a common width (see `MultiTaskModel.forward`).
    """

    def __init__(self, tokenizer, tasks: Sequence[TaskSpec], pad_to_multiple_of: int | None = None):
        self.tokenizer = tokenizer
        self.tasks = list(tasks)
        self.pad_to_multiple_of = pad_to_multiple_of

    def for_task(self, name: str):
        """A collator for features of one task that lack `task_id` (evaluation / prediction loaders)."""
        index = [task.name for task in self.tasks].index(name)

        def collate(features):
            return self([{**feature, "task_id": index} for feature in features])

        return collate

    def _joint_labels(self, features: list[dict], seq_len: int) -> dict[str, torch.Tensor]:
        """Labels of the other heads of an input group (`joint_labels__<task>` columns), one row per example in the
        padded format of mixed batches; rows without them are all -100."""
        names = sorted({key[len(JOINT_PREFIX):] for feature in features for key in feature if key.startswith(JOINT_PREFIX)})
        specs = {task.name: task for task in self.tasks}
        joint = {}
        for name in names:
            if name not in specs:
                raise DataError(f"Joint labels of {name!r}, which is not a task of this collator ({', '.join(specs)}).")
            rows = [_label_row(f[JOINT_PREFIX + name], specs[name], seq_len) if JOINT_PREFIX + name in f
                    else torch.full((1,), -100.0) for f in features]
            padded = torch.full((len(rows), max(row.numel() for row in rows)), -100.0)
            for i, row in enumerate(rows):
                padded[i, : row.numel()] = row
            joint[name] = padded
        return joint

    def _pad_inputs(self, features: list[dict]) -> dict[str, torch.Tensor]:
        inputs = [{key: feature[key] for key in MODEL_INPUTS if key in feature} for feature in features]
        return dict(self.tokenizer.pad(inputs, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"))

    def _check_features(self, features: list[dict[str, Any]]) -> tuple[list[int], bool]:
        """Task ids of the features and whether they carry labels; a clear `DataError` for what cannot be padded."""
        if not features:
            raise DataError("MultiTaskCollator got an empty list of features: a batch needs at least one example.")
        task_ids = []
        for row, feature in enumerate(features):
            task_id = feature.get("task_id") if isinstance(feature, Mapping) else None
            if isinstance(task_id, torch.Tensor) and task_id.numel() == 1:
                task_id = task_id.item()
            if isinstance(task_id, numbers.Integral) and not isinstance(task_id, bool):
                task_id = int(task_id)
            if not isinstance(task_id, int) or isinstance(task_id, bool) or not 0 <= task_id < len(self.tasks):
                raise DataError(
                    f"Feature {row}: `task_id` must be a task index in 0..{len(self.tasks) - 1} "
                    f"({', '.join(f'{i}={t.name}' for i, t in enumerate(self.tasks))}), got {task_id!r}."
                )
            if "input_ids" not in feature:
                raise DataError(f"Feature {row} (task {self.tasks[task_id].name!r}) has no `input_ids`: tokenise it first.")
            task_ids.append(task_id)
        with_labels = [row for row, feature in enumerate(features) if "labels" in feature]
        if with_labels and len(with_labels) != len(features):
            missing = sorted(set(range(len(features))) - set(with_labels))
            raise DataError(
                f"Feature(s) {missing[:10]} have no `labels` while the others do: a batch is either labelled or not."
            )
        for row, (feature, task_id) in enumerate(zip(features, task_ids)):
            task = self.tasks[task_id]
            if with_labels and task.type == "token_classification" and len(feature["labels"]) != len(feature["input_ids"]):
                raise DataError(
                    f"Feature {row} (task {task.name!r}): {len(feature['labels'])} token labels for "
                    f"{len(feature['input_ids'])} input ids; token labels must be aligned to the input ids "
                    "(see `preprocess_task`, which aligns word labels to sub-words)."
                )
        return task_ids, bool(with_labels)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        task_ids, has_labels = self._check_features(features)
        if len(set(task_ids)) == 1:
            task = self.tasks[task_ids[0]]
            batch = self._collate_one_task(features, task, has_labels)
            batch["task"] = task.name
            if has_labels and task.type != "multiple_choice":
                joint = self._joint_labels(features, batch["input_ids"].shape[1])
                if joint:
                    batch["joint_labels"] = joint
            return batch
        unmixable = sorted({self.tasks[i].name for i in task_ids if self.tasks[i].type == "multiple_choice"})
        if unmixable:
            raise DataError(f"Task(s) {unmixable} (multiple choice) cannot share a mixed batch; use batching='per_task'.")
        batch = self._pad_inputs(features)
        seq_len = batch["input_ids"].shape[1]
        if has_labels:
            rows = [_label_row(feature["labels"], self.tasks[i], seq_len) for feature, i in zip(features, task_ids)]
            width = max(row.numel() for row in rows)
            labels = torch.full((len(rows), width), -100.0)
            for i, row in enumerate(rows):
                labels[i, : row.numel()] = row
            batch["labels"] = labels
            joint = self._joint_labels(features, seq_len)
            if joint:
                batch["joint_labels"] = joint
        batch["task_ids"] = torch.tensor(task_ids, dtype=torch.long)
        return batch

    def _collate_one_task(self, features: list[dict], task: TaskSpec, has_labels: bool) -> dict[str, Any]:
        if task.type == "multiple_choice":
            num_choices = len(features[0]["input_ids"])
            counts = sorted({len(feature["input_ids"]) for feature in features})
            if len(counts) > 1:
                raise DataError(
                    f"Task {task.name!r}: the examples of one batch have {counts} choices; every example of a "
                    "multiple-choice task needs the same number of choices."
                )
            flat = [
                {key: feature[key][c] for key in MODEL_INPUTS if key in feature}
                for feature in features
                for c in range(num_choices)
            ]
            batch = {key: value.view(len(features), num_choices, -1) for key, value in self._pad_inputs(flat).items()}
        else:
            batch = self._pad_inputs(features)
        if not has_labels:
            return batch
        labels = [feature["labels"] for feature in features]
        if task.type == "token_classification":
            seq_len = batch["input_ids"].shape[1]
            batch["labels"] = torch.tensor([list(row) + [-100] * (seq_len - len(row)) for row in labels], dtype=torch.long)
        elif task.type in ("regression", "multi_label_classification"):
            batch["labels"] = torch.tensor(labels, dtype=torch.float)
        else:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch


def _label_row(labels, task: TaskSpec, seq_len: int) -> torch.Tensor:
    if task.type == "token_classification":
        return torch.tensor(list(labels) + [-100] * (seq_len - len(labels)), dtype=torch.float)
    return torch.tensor(labels, dtype=torch.float).reshape(-1)
