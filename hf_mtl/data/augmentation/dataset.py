"""`augment_dataset`: append label-preserving augmented copies of a task's rows to its `datasets.Dataset`.

Augmentation is offline (before tokenization) so the trainer sees ordinary rows, and every new row is derived
from one original row, whose non-text columns (label, ids, metadata) it copies.
"""

from __future__ import annotations

import random
from typing import Any

from datasets import Dataset, concatenate_datasets

from ...tasks import TaskSpec
from .base import (
    TOKEN_TASK_TYPES,
    AugmentationError,
    SequenceAugmentation,
    build_methods,
    check_method_names,
    check_ratio,
    check_seed,
    methods_for_type,
    supported_task_types,
)
from .rows import check_columns, read_sentences, read_texts, tags_to_ids, task_columns


def resolve_methods(task: TaskSpec, methods: Any) -> list[str]:
    """The method names to use for `task`: the listed ones if all support its type, else the type's defaults."""
    names = check_method_names(methods)
    supported = methods_for_type(task.type)
    if not supported:
        raise AugmentationError(
            f"Task {task.name!r} has type {task.type!r}, which no augmentation method supports; supported task "
            f"types: {', '.join(supported_task_types())}."
        )
    for name in names or []:
        if name not in supported:
            raise AugmentationError(
                f"Augmentation {name!r} does not support task {task.name!r} of type {task.type!r}. Methods for "
                f"{task.type!r}: {', '.join(supported)}."
            )
    return names or supported


def augment_dataset(
    dataset: Dataset,
    task: TaskSpec | dict[str, Any],
    ratio: float,
    methods: list[str] | None = None,
    seed: int = 0,
    **method_kwargs: Any,
) -> Dataset:
    """Return `dataset` followed by `round(ratio * len(dataset))` augmented rows (half up).

    Args:
        dataset: one split of one task, RAW (untokenized) columns.
        task: the task's `TaskSpec` (or its dict); its type picks the methods, its columns say what to edit.
        ratio: new rows as a fraction of the dataset size, in [0, 1].
        methods: method names (see `AUGMENTATIONS`); `None` uses every method for the task type.
        seed: one seed for the whole run; the same seed gives the same rows.
        **method_kwargs: hyperparameters, e.g. `p=0.2` (every selected method with a `p`) or
            `random_deletion={"p": 0.2}` (one method).

    Source rows are drawn without replacement in a seeded random order (a row is reused only when empty rows leave
    fewer sources than new rows), and methods are cycled over the new rows, so each method gets an equal share. Statistics (vocabulary, tokens per tag, mentions per type) are built from
    every row of `dataset`. Rows with an empty text or token list are never used as sources (no label-preserving
    edit exists for them). New rows have the same columns and features as `dataset`, so
    `concatenate_datasets` works on the result. The whole split is read into memory: meant for low-resource tasks.
    """
    task = TaskSpec.from_any(task)
    ratio = check_ratio(ratio)
    seed = check_seed(seed)
    names = resolve_methods(task, methods)
    if not isinstance(dataset, Dataset):
        raise AugmentationError(
            f"`dataset` must be a datasets.Dataset (one split), got {type(dataset).__name__}; for a DatasetDict, "
            "augment the training split: augment_dataset(ds['train'], ...)."
        )
    if len(dataset) == 0:
        raise AugmentationError(f"Task {task.name!r}: the dataset is empty; there are no rows to augment.")
    text_columns, label_column = task_columns(task)
    token_level = task.type in TOKEN_TASK_TYPES
    check_columns(task, dataset.column_names, text_columns + ([label_column] if token_level else []))
    augmenters = build_methods(names, method_kwargs)

    data = dataset.with_format(None).to_dict()
    if token_level:
        edit, usable = _token_editor(data, text_columns[0], label_column, task, augmenters)
    else:
        edit, usable = _text_editor(data, text_columns, augmenters)
    if not usable:
        raise AugmentationError(
            f"Task {task.name!r}: every row has an empty text or token list in {text_columns}; nothing to augment."
        )

    count = int(ratio * len(dataset) + 0.5)
    if count == 0:
        return dataset
    rng = random.Random(seed)
    sources: list[int] = []
    while len(sources) < count:
        sources.extend(rng.sample(usable, len(usable)))
    sources = sources[:count]
    new_rows = {column: [values[i] for i in sources] for column, values in data.items()}
    for j, source in enumerate(sources):
        row_rng = random.Random(rng.getrandbits(64))  # one stream per new row: its edits do not depend on earlier rows'
        for column, value in edit(augmenters[j % len(augmenters)], source, row_rng).items():
            new_rows[column][j] = value
    new = Dataset.from_dict(new_rows, features=dataset.features)
    result = concatenate_datasets([dataset.with_format(None), new])
    form = dataset.format
    if form["type"] is not None or form["columns"] != dataset.column_names:
        result = result.with_format(
            form["type"],
            columns=form["columns"],
            output_all_columns=form["output_all_columns"],
            **form["format_kwargs"],
        )
    return result


def _text_editor(data: dict[str, list], text_columns: list[str], augmenters: list):
    """Sentence-level: each text column is edited independently; the label column is copied untouched."""
    words = {column: read_texts(data[column], column) for column in text_columns}
    for method in augmenters:
        method.fit([w for column in text_columns for w in words[column]])
    usable = [i for i in range(len(data[text_columns[0]])) if all(words[c][i] for c in text_columns)]

    def edit(method: SequenceAugmentation, source: int, rng: random.Random) -> dict[str, str]:
        return {column: " ".join(method.augment_words(words[column][source], rng)) for column in text_columns}

    return edit, usable


def _token_editor(data: dict[str, list], tokens_column: str, tags_column: str, task: TaskSpec, augmenters: list):
    """Token-level: tokens and tags are edited together; tags go back as ids if the row stored ids."""
    sentences, as_ids = read_sentences(data[tokens_column], data[tags_column], tokens_column, tags_column, task)
    for method in augmenters:
        method.fit(sentences)
    usable = [i for i, (tokens, _) in enumerate(sentences) if tokens]

    def edit(method, source: int, rng: random.Random) -> dict[str, list]:
        tokens, tags = method.augment_tokens(*sentences[source], rng)
        if as_ids[source]:
            tags = tags_to_ids(tags, task, method.name)
        return {tokens_column: tokens, tags_column: tags}

    return edit, usable
