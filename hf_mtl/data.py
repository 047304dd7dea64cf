"""Per-task preprocessing (validation, label mapping, tokenisation with sub-word label alignment) and the
collator that pads each task type's inputs and labels.

Raw datasets are validated before any work starts: a missing column, an empty split, or a label outside the
task's label set fails with the task, the column/row and the fix.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from datasets import Dataset
from datasets.fingerprint import Hasher

from .errors import HfMtlError, LabelError
from .joint import JOINT_PREFIX
from .tasks import TaskSpec



MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

DEFAULT_TEXT_COLUMNS = {
    "sequence_classification": ["text"],
    "multi_label_classification": ["text"],
    "regression": ["text"],
    "token_classification": ["tokens"],
    "multiple_choice": ["context", "choices"],
}


class DataError(HfMtlError):
    """A dataset does not fit its task: missing column, empty split, bad row."""


def text_columns(task: TaskSpec) -> list[str]:
    return list(task.text_columns or DEFAULT_TEXT_COLUMNS[task.type])


def label_column(task: TaskSpec) -> str:
    return task.label_column or ("tags" if task.type == "token_classification" else "label")


def is_preprocessed(dataset: Dataset) -> bool:
    return "input_ids" in dataset.column_names


# ---------------------------------------------------------------------------------------------- validation


def check_columns(dataset: Dataset, task: TaskSpec, split: str, need_labels: bool = True) -> None:
    if len(dataset) == 0:
        raise DataError(f"Task {task.name!r}: the {split} split is empty; give it at least one example.")
    needed = text_columns(task) + ([label_column(task)] if need_labels else [])
    missing = [column for column in needed if column not in dataset.column_names]
    if missing:
        raise DataError(
            f"Task {task.name!r} ({split} split): column(s) {missing} not found; the dataset has "
            f"{dataset.column_names}. Set the task's `text_columns` / `label_column` to the right names."
        )


def encode_labels(values: Sequence[Any], task: TaskSpec, split: str, tokens: Sequence[Sequence[str]] | None = None) -> list:
    """Map raw label values (names or ids) to the head's format, naming the first bad row."""
    label2id = task.label2id
    names = task.labels or []

    def class_id(value, row):
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, str):
            if value not in label2id:
                raise LabelError(
                    f"Task {task.name!r} ({split} split), row {row}: label {value!r} is not in the label set {names}. "
                    "Add it to the task's `labels` or fix the data."
                )
            return label2id[value]
        if isinstance(value, (int,)) or (isinstance(value, float) and float(value).is_integer()):
            value = int(value)
            if not 0 <= value < len(names):
                raise LabelError(
                    f"Task {task.name!r} ({split} split), row {row}: label id {value} is out of range for "
                    f"{len(names)} labels {names}."
                )
            return value
        raise LabelError(
            f"Task {task.name!r} ({split} split), row {row}: label {value!r} ({type(value).__name__}) is neither a "
            f"label name nor an integer id."
        )

    encoded = []
    for row, value in enumerate(values):
        if value is None:
            raise LabelError(f"Task {task.name!r} ({split} split), row {row}: the label is missing (None).")
        if task.type in ("sequence_classification",):
            encoded.append(class_id(value, row))
        elif task.type == "multiple_choice":
            if isinstance(value, bool) or not isinstance(value, int):
                raise LabelError(f"Task {task.name!r} ({split} split), row {row}: the answer must be a choice index, got {value!r}.")
            encoded.append(value)
        elif task.type == "regression":
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise LabelError(f"Task {task.name!r} ({split} split), row {row}: regression target {value!r} is not a number.") from None
            if not math.isfinite(number):
                raise LabelError(f"Task {task.name!r} ({split} split), row {row}: regression target {value!r} is not finite.")
            encoded.append(number)
        elif task.type == "multi_label_classification":
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise LabelError(
                    f"Task {task.name!r} ({split} split), row {row}: multi-label targets are a list of label names "
                    f"(or a multi-hot list of {len(names)} values), got {value!r}."
                )
            if len(value) and all(isinstance(v, str) for v in value):
                hot = [0.0] * len(names)
                for name in value:
                    hot[class_id(name, row)] = 1.0
                encoded.append(hot)
            elif len(value) == len(names) and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in value):
                encoded.append([float(v) for v in value])
            elif len(value) == 0:
                encoded.append([0.0] * len(names))
            else:
                raise LabelError(
                    f"Task {task.name!r} ({split} split), row {row}: {value!r} is neither a list of label names from "
                    f"{names} nor a multi-hot list of length {len(names)}."
                )
        elif task.type == "token_classification":
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise LabelError(f"Task {task.name!r} ({split} split), row {row}: tags must be a list, got {value!r}.")
            if tokens is not None and len(value) != len(tokens[row]):
                raise LabelError(
                    f"Task {task.name!r} ({split} split), row {row}: {len(tokens[row])} tokens but {len(value)} tags; "
                    "every word needs exactly one tag."
                )
            encoded.append([class_id(tag, row) for tag in value])
    return encoded


# ---------------------------------------------------------------------------------------------- tokenisation


def preprocess_task(
    dataset: Dataset,
    task: TaskSpec,
    tokenizer,
    max_length: int = 128,
    split: str = "train",
    need_labels: bool = True,
    label_all_subwords: bool = False,
) -> Dataset:
    """Validate and tokenise one task's split into `input_ids`, `attention_mask`, (`token_type_ids`) and `labels`.

    Texts longer than `max_length` are truncated; for token classification the word labels go to the first
    sub-word of each word (all sub-words with `label_all_subwords=True`), -100 elsewhere, so truncation keeps the
    alignment of the words that remain. A dataset that already has `input_ids` is returned as is (its `labels`
    must already be in the head's format).
    """
    if max_length is None or max_length < 2:
        raise DataError(f"Task {task.name!r}: max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}.")
    if is_preprocessed(dataset):
        if len(dataset) == 0:
            raise DataError(f"Task {task.name!r}: the {split} split is empty; give it at least one example.")
        if need_labels and "labels" not in dataset.column_names:
            raise DataError(
                f"Task {task.name!r} ({split} split): the dataset is tokenised (has input_ids) but has no 'labels' column."
            )
        return dataset
    check_columns(dataset, task, split, need_labels)
    columns = text_columns(task)
    if task.type == "multiple_choice":  # over the whole split: `map` below only sees 1000 rows at a time
        counts = sorted({len(choices) if isinstance(choices, Sequence) else 0 for choices in dataset[columns[1]]})
        if len(counts) != 1 or counts[0] == 0:
            raise DataError(
                f"Task {task.name!r} ({split} split): every example needs the same, non-zero number of choices; "
                f"found {counts}."
            )
    if task.type == "token_classification":
        words = dataset[columns[0]]
        for row, sentence in enumerate(words):
            if isinstance(sentence, str) or not isinstance(sentence, Sequence):
                raise DataError(
                    f"Task {task.name!r} ({split} split), row {row}: column {columns[0]!r} must hold a list of words, "
                    f"got {type(sentence).__name__}."
                )
    labels = encode_labels(dataset[label_column(task)], task, split, tokens=words if task.type == "token_classification" else None) if need_labels else None

    indices = list(range(len(dataset)))
    dataset = dataset.add_column("__row__", indices)

    def tokenize(batch: Mapping[str, list]) -> dict[str, list]:
        rows = batch["__row__"]
        if task.type == "multiple_choice":
            encoded = _tokenize_choices(batch, columns, tokenizer, max_length, task, split, rows)
        elif task.type == "token_classification":
            encoded = tokenizer(batch[columns[0]], is_split_into_words=True, truncation=True, max_length=max_length)
            if need_labels:
                encoded["labels"] = [
                    _align_word_labels(encoded.word_ids(i), labels[row], label_all_subwords)
                    for i, row in enumerate(rows)
                ]
        else:
            texts = [_text_values(batch[column], task, split, column, rows) for column in columns[:2]]
            encoded = tokenizer(*texts, truncation=True, max_length=max_length)
        if need_labels and "labels" not in encoded:
            encoded["labels"] = [labels[row] for row in rows]
        return {key: value for key, value in encoded.items() if key in (*MODEL_INPUTS, "labels")}

    # `datasets` would fingerprint `tokenize` by pickling its closure (tokenizer, label lists): seconds per split.
    # What the result depends on is small and known; hash that instead.
    fingerprint = Hasher.hash((
        dataset._fingerprint, task.to_dict(), type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""),
        len(tokenizer), max_length, split, need_labels, label_all_subwords,
    ))
    return dataset.map(
        tokenize,
        batched=True,
        remove_columns=dataset.column_names,
        desc=f"Tokenizing {task.name} ({split})",
        new_fingerprint=fingerprint,
    )


def _text_values(values: list, task: TaskSpec, split: str, column: str, rows: list[int]) -> list[str]:
    """Texts of a sentence-level task; a column of word lists (a token-tagging dataset's `tokens`, e.g. for a joint
    intent head) reads as the words joined with spaces."""
    texts = []
    for value, row in zip(values, rows):
        if isinstance(value, (list, tuple)) and all(isinstance(word, str) for word in value):
            value = " ".join(value)
        if not isinstance(value, str):
            raise DataError(
                f"Task {task.name!r} ({split} split), row {row}: column {column!r} must hold text, got {value!r}."
            )
        texts.append(value)
    return texts


def _align_word_labels(word_ids: list[int | None], word_labels: list[int], all_subwords: bool) -> list[int]:
    aligned, previous = [], None
    for word_id in word_ids:
        if word_id is None:
            aligned.append(-100)
        elif word_id != previous or all_subwords:
            aligned.append(word_labels[word_id])
        else:
            aligned.append(-100)
        previous = word_id
    return aligned


def _tokenize_choices(batch, columns, tokenizer, max_length, task, split, rows):
    contexts, choice_lists = batch[columns[0]], batch[columns[1]]
    num_choices = {len(choices) for choices in choice_lists}
    if len(num_choices) != 1 or 0 in num_choices:
        raise DataError(
            f"Task {task.name!r} ({split} split): every example needs the same, non-zero number of choices; "
            f"found {sorted(num_choices)}."
        )
    n = num_choices.pop()
    first = [context for context in contexts for _ in range(n)]
    second = [choice for choices in choice_lists for choice in choices]
    flat = tokenizer(first, second, truncation=True, max_length=max_length)
    return {key: [values[i * n : (i + 1) * n] for i in range(len(contexts))] for key, values in flat.items()}


# ---------------------------------------------------------------------------------------------- dataset + collator


class MultiTaskDataset(torch.utils.data.Dataset):
    """Concatenation of per-task tokenised datasets; each item carries its `task_id` (index in `task_names`, or
    `task_ids[i]` when the datasets are streams of an input group: see `hf_mtl.joint`)."""

    def __init__(self, datasets: Mapping[str, Dataset], task_names: Sequence[str], task_ids: Sequence[int] | None = None):
        self.task_names = list(task_names)
        self.task_ids = list(task_ids) if task_ids is not None else list(range(len(self.task_names)))
        self.datasets = [datasets[name] for name in self.task_names]
        self.sizes = [len(dataset) for dataset in self.datasets]
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    def __len__(self) -> int:
        return sum(self.sizes)

    def locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} out of range for {len(self)} rows.")
        task = max(i for i, offset in enumerate(self.offsets) if offset <= index and self.sizes[i] > 0)
        return task, index - self.offsets[task]

    def __getitem__(self, index: int) -> dict[str, Any]:
        task, row = self.locate(index)
        item = {key: value for key, value in self.datasets[task][row].items() if _is_item_key(key)}
        item["task_id"] = self.task_ids[task]
        return item

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """The rows of a batch, in order, reading each task's rows with ONE Arrow call (row-by-row reads cost ~4x more,
        about 3 ms per batch of 16: a tenth of a GPU training step of a small encoder)."""
        by_task: dict[int, list[tuple[int, int]]] = {}
        for position, index in enumerate(indices):
            task, row = self.locate(index)
            by_task.setdefault(task, []).append((position, row))
        items: list[dict[str, Any]] = [{} for _ in indices]
        for task, entries in by_task.items():
            columns = self.datasets[task][[row for _, row in entries]]
            keys = [key for key in columns if _is_item_key(key)]
            for j, (position, _) in enumerate(entries):
                items[position] = {key: columns[key][j] for key in keys}
                items[position]["task_id"] = self.task_ids[task]
        return items


def _is_item_key(key: str) -> bool:
    return key in (*MODEL_INPUTS, "labels") or key.startswith(JOINT_PREFIX)


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
