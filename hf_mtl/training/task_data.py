"""The trainer's per-task data: `{task: Dataset or DatasetDict}` validated, split-picked and tokenised."""

from __future__ import annotations

from collections.abc import Mapping

from datasets import Dataset, DatasetDict

from ..data import label_column, preprocess_task
from ..errors import TaskError
from ..tasks import TaskSpec


# Which split of a task's DatasetDict each use takes, first match wins.
SPLIT_NAMES = {"train": ("train",), "eval": ("validation", "valid", "dev"), "test": ("test",)}


def split_of(dataset: DatasetDict, task: str, split: str) -> Dataset:
    """The split of a task's `DatasetDict` (`load_dataset` output) that `split` means, or an error listing its splits."""
    for name in SPLIT_NAMES[split]:
        if name in dataset:
            return dataset[name]
    raise TypeError(
        f"Task {task!r}: its DatasetDict has splits {list(dataset)} and none of {list(SPLIT_NAMES[split])} for the "
        f"{split} data: pass the split to use, e.g. `dataset[{next(iter(dataset))!r}]`."
    )


def has_labels(spec: TaskSpec, dataset: Dataset) -> bool:
    """Whether a split carries the task's labels (`labels` once tokenised, else the task's label column)."""
    column = "labels" if "input_ids" in dataset.column_names else label_column(spec)
    return column in dataset.column_names


def prepare_task_splits(trainer, datasets, split: str, tokenizer, args, require_all: bool) -> dict[str, Dataset]:
    """`{task: Dataset}` tokenised for `split` ("train", "eval" or "test") with the trainer's task specs and
    `max_seq_length`. A task may also be given as the `DatasetDict` that `load_dataset` returns: its train /
    validation / test split is taken."""
    task_names = trainer.task_names
    if datasets is None:
        return {}
    if isinstance(datasets, Dataset) or not isinstance(datasets, Mapping):
        raise TypeError(
            f"The {split} data must be a dict {{task_name: datasets.Dataset or DatasetDict}} (one entry per task), "
            f"got {type(datasets).__name__}."
        )
    if isinstance(datasets, DatasetDict) and not set(datasets) & set(task_names):
        raise TypeError(
            f"The {split} data is a DatasetDict of splits ({', '.join(datasets)}), not of tasks: pass "
            f"{{task_name: dataset}}, e.g. {{{task_names[0]!r}: load_dataset(...)}}."
        )
    unknown = sorted(set(datasets) - set(task_names))
    if unknown:
        raise TaskError(
            f"Task(s) {unknown} in the {split} data are not tasks of the model ({', '.join(task_names)}). "
            "Add them with `model.add_task(...)` or drop them from the data."
        )
    missing = [name for name in task_names if name not in datasets]
    if require_all and missing:
        raise TaskError(
            f"Task(s) {missing} of the model have no {split} data. Give each task a {split} split, or remove the "
            "task with `model.remove_task(...)`."
        )
    prepared = {}
    for name in task_names:
        if name not in datasets:
            continue
        dataset = datasets[name]
        if isinstance(dataset, DatasetDict):
            dataset = split_of(dataset, name, split)
        if "input_ids" not in dataset.column_names and tokenizer is None:
            raise ValueError(f"Task {name!r}: raw {split} data needs `processing_class` (a tokenizer) to tokenise it.")
        # Predictions need no labels; a test split that has them is scored too.
        need_labels = split != "test" or has_labels(trainer.task_specs[name], dataset)
        with args.main_process_first(desc=f"tokenizing {name} ({split})"):
            prepared[name] = preprocess_task(
                dataset, trainer.task_specs[name], tokenizer, trainer.max_seq_length, split, need_labels=need_labels
            )
    return prepared
