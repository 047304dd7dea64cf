"""Per-task preprocessing: validation, label mapping, tokenisation with sub-word label alignment.

Raw datasets are validated before any work starts: a missing column, an empty split, or a label outside the
task's label set fails with the task, the column/row and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from datasets import Dataset
from datasets.fingerprint import Hasher

from ..errors import HfMtlError, LabelError, UnknownLabelError
from ..tasks import TaskSpec


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


UNKNOWN_LABEL_FIX = "Add it to the task's `labels` or fix the data."


def encode_labels(values: Sequence[Any], task: TaskSpec, split: str, tokens: Sequence[Sequence[str]] | None = None,
                  unknown_label_fix: str = UNKNOWN_LABEL_FIX) -> list:
    """Map raw label values (names or ids) to the head's format, naming the first bad row (1-based). A name outside
    the label set raises `UnknownLabelError` ending in `unknown_label_fix` (callers that inferred the label set say
    where it came from and how to keep the label)."""
    label2id = task.label2id
    names = task.labels or []

    def class_id(value, row):
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, str):
            if value not in label2id:
                near = [name for name in names if name.strip() == value.strip()]
                hint = f" It differs from {near[0]!r} only by white space." if near else ""
                raise UnknownLabelError(
                    f"Task {task.name!r} ({split} split), row {row + 1}: label {value!r} is not in the label set {names}."
                    f"{hint} {unknown_label_fix}"
                )
            return label2id[value]
        if isinstance(value, (int,)) or (isinstance(value, float) and float(value).is_integer()):
            value = int(value)
            if not 0 <= value < len(names):
                raise LabelError(
                    f"Task {task.name!r} ({split} split), row {row + 1}: label id {value} is out of range for "
                    f"{len(names)} labels {names}."
                )
            return value
        raise LabelError(
            f"Task {task.name!r} ({split} split), row {row + 1}: label {value!r} ({type(value).__name__}) is neither a "
            f"label name nor an integer id."
        )

    encoded = []
    for row, value in enumerate(values):
        if value is None:
            raise LabelError(f"Task {task.name!r} ({split} split), row {row + 1}: the label is missing (None).")
        if task.type in ("sequence_classification",):
            encoded.append(class_id(value, row))
        elif task.type == "multiple_choice":
            if isinstance(value, bool) or not isinstance(value, int):
                raise LabelError(f"Task {task.name!r} ({split} split), row {row + 1}: the answer must be a choice index, got {value!r}.")
            encoded.append(value)
        elif task.type == "regression":
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise LabelError(f"Task {task.name!r} ({split} split), row {row + 1}: regression target {value!r} is not a number.") from None
            if not math.isfinite(number):
                raise LabelError(f"Task {task.name!r} ({split} split), row {row + 1}: regression target {value!r} is not finite.")
            encoded.append(number)
        elif task.type == "multi_label_classification":
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise LabelError(
                    f"Task {task.name!r} ({split} split), row {row + 1}: multi-label targets are a list of label names "
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
                    f"Task {task.name!r} ({split} split), row {row + 1}: {value!r} is neither a list of label names from "
                    f"{names} nor a multi-hot list of length {len(names)}."
                )
        elif task.type == "token_classification":
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise LabelError(f"Task {task.name!r} ({split} split), row {row + 1}: tags must be a list, got {value!r}.")
            if tokens is not None and len(value) != len(tokens[row]):
                raise LabelError(
                    f"Task {task.name!r} ({split} split), row {row + 1}: {len(tokens[row])} tokens but {len(value)} tags; "
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
                    f"Task {task.name!r} ({split} split), row {row + 1}: column {columns[0]!r} must hold a list of words, "
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
                f"Task {task.name!r} ({split} split), row {row + 1}: column {column!r} must hold text, got {value!r}."
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
