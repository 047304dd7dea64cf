"""Reading and checking raw rows: which columns a task uses, and texts / (tokens, tags) in the form methods expect.

Every check names the row index and the column, because a malformed row found halfway through a large dataset is
otherwise hard to locate.
"""

from __future__ import annotations

from typing import Any

from ...tasks import TaskSpec
from .base import TOKEN_TASK_TYPES, AugmentationError


def task_columns(task: TaskSpec) -> tuple[list[str], str]:
    """(text columns, label column) with the defaults documented on `TaskSpec`."""
    if task.type in TOKEN_TASK_TYPES:
        text_columns = task.text_columns or ["tokens"]
        if len(text_columns) != 1:
            raise AugmentationError(
                f"Task {task.name!r} of type {task.type!r} has text_columns {text_columns}: token classification "
                "augmentation needs exactly one token column (a list of words per row)."
            )
        return text_columns, task.label_column or "tags"
    return task.text_columns or ["text"], task.label_column or "label"


def check_columns(task: TaskSpec, present: list[str], required: list[str]) -> None:
    for column in required:
        if column not in present:
            raise AugmentationError(
                f"Task {task.name!r}: column {column!r} is not in the dataset (columns present: {present}). Rename "
                "the column or set `text_columns` / `label_column` in the task spec."
            )


def read_texts(values: list[Any], column: str) -> list[list[str]]:
    """Whitespace words of each text. EDA works on words; the augmented text is re-joined with single spaces."""
    words = []
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise AugmentationError(f"Row {row}: column {column!r} must hold a string, got {value!r}.")
        words.append(value.split())
    return words


def read_sentences(
    tokens_values: list[Any], tags_values: list[Any], tokens_column: str, tags_column: str, task: TaskSpec
) -> tuple[list[tuple[list[str], list[str]]], list[bool]]:
    """(tokens, string tags) per row, and whether each row stored its tags as label ids (to write them back so)."""
    labels = task.labels or []
    sentences, as_ids = [], []
    for row, (tokens, tags) in enumerate(zip(tokens_values, tags_values)):
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise AugmentationError(f"Row {row}: column {tokens_column!r} must hold a list of strings, got {tokens!r}.")
        if not isinstance(tags, list):
            raise AugmentationError(f"Row {row}: column {tags_column!r} must hold a list of tags, got {tags!r}.")
        if len(tokens) != len(tags):
            raise AugmentationError(
                f"Row {row}: {len(tokens)} tokens in {tokens_column!r} but {len(tags)} tags in {tags_column!r}; "
                "every token needs exactly one tag."
            )
        ids = bool(tags) and all(isinstance(tag, int) and not isinstance(tag, bool) for tag in tags)
        if ids:
            bad = [tag for tag in tags if not 0 <= tag < len(labels)]
            if bad:
                raise AugmentationError(
                    f"Row {row}: tag ids {bad} in {tags_column!r} are outside the labels of task {task.name!r} "
                    f"(0..{len(labels) - 1}: {labels})."
                )
            tags = [labels[tag] for tag in tags]
        elif not all(isinstance(tag, str) for tag in tags):
            raise AugmentationError(
                f"Row {row}: column {tags_column!r} must hold tag names (str) or label ids (int), got {tags!r}."
            )
        sentences.append((list(tokens), list(tags)))
        as_ids.append(ids)
    return sentences, as_ids


def tags_to_ids(tags: list[str], task: TaskSpec, method: str) -> list[int]:
    label2id = task.label2id
    unknown = sorted({tag for tag in tags if tag not in label2id})
    if unknown:
        raise AugmentationError(
            f"{method!r} produced tags {unknown} that are not labels of task {task.name!r} ({task.labels}); the "
            "dataset stores label ids, so add these tags to the task's labels."
        )
    return [label2id[tag] for tag in tags]
