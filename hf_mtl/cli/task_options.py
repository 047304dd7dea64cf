"""Shared command-line pieces: a task spec from flags or a small YAML/JSON file, and local data files
(json / jsonl / csv, read with `datasets.load_dataset`). Not a subcommand (the leading underscore hides it)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from datasets import Dataset, load_dataset

from ..data import DEFAULT_TEXT_COLUMNS, encode_labels, label_column
from ..errors import LabelError, TaskError
from ..tasks import TaskSpec


DATA_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv"}


def add_task_arguments(parser: argparse.ArgumentParser, flag: str = "--task") -> None:
    group = parser.add_argument_group("task", "The new task: flags, or --task-spec FILE (YAML/JSON with the TaskSpec keys).")
    group.add_argument(flag, dest="task", required=True, help="Name of the new task.")
    group.add_argument("--task-spec", help="YAML or JSON file with the task's keys (type, labels, text_columns, label_column, metric).")
    group.add_argument("--task-type", default=None, help="Task type (default sequence_classification).")
    group.add_argument("--labels", default=None, help="Comma-separated label names in id order (default: the sorted labels found in the data).")
    group.add_argument("--text-columns", default=None, help="Comma-separated text column(s), e.g. text or premise,hypothesis.")
    group.add_argument("--label-column", default=None, help="Label column (default label; tags for token classification).")
    group.add_argument("--metric", default=None, help="Main metric (default: the task type's).")


def load_data_file(path: str, what: str = "data") -> Dataset:
    """One split from a local json / jsonl / csv file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file {path!r} does not exist.")
    extension = os.path.splitext(path)[1].lower()
    if extension not in DATA_BUILDERS:
        raise ValueError(f"{what} file {path!r}: use .json, .jsonl or .csv (got {extension or 'no extension'}).")
    return load_dataset(DATA_BUILDERS[extension], data_files=path, split="train")


def parse_task_file_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """`["sst2=train.jsonl", ...]` -> `{"sst2": "train.jsonl"}`."""
    pairs = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{option} takes TASK=FILE (e.g. {option} sentiment=old_train.jsonl), got {value!r}.")
        pairs[name] = path
    return pairs


def parse_ints(value: str, option: str) -> list[int]:
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{option} takes comma-separated integers (e.g. 8,16,32), got {value!r}.") from None
    if not numbers:
        raise ValueError(f"{option} is empty.")
    return numbers


def build_task_spec(args: argparse.Namespace, *datasets: Dataset) -> TaskSpec:
    """The task from `--task-spec` and/or the flags (flags win); labels not given are read off the data."""
    values: dict[str, Any] = {}
    if args.task_spec:
        values = _read_spec_file(args.task_spec)
    values["name"] = args.task
    if args.task_type:
        values["type"] = args.task_type
    values.setdefault("type", "sequence_classification")
    if args.labels:
        values["labels"] = [label.strip() for label in args.labels.split(",") if label.strip()]
    if args.text_columns:
        values["text_columns"] = [column.strip() for column in args.text_columns.split(",") if column.strip()]
    if args.label_column:
        values["label_column"] = args.label_column
    if args.metric:
        values["metric"] = args.metric
    if "labels" not in values and values["type"] in DEFAULT_TEXT_COLUMNS and values["type"] != "regression":
        values["labels"] = infer_labels(values, datasets[:1])  # the training data: see `check_unseen_labels`
        spec = TaskSpec.from_any(values)
        where = f"--eval-data {args.eval_data}" if getattr(args, "eval_data", None) else "the evaluation data"
        for dataset in datasets[1:]:
            check_unseen_labels(spec, dataset, where)
        return spec
    return TaskSpec.from_any(values)


INFERRED_LABELS_FIX = ("The labels were read off the training data: pass --labels with every label to keep it as a "
                       "class without training rows, or fix the row.")


def check_unseen_labels(spec: TaskSpec, dataset: Dataset | None, where: str) -> None:
    """A label of the evaluation data that the training data never shows would be a class without a training row:
    refuse it now with `encode_labels`' message (the row, 1-based, and the value) and the CLI's fix."""
    if spec.labels is None or spec.type not in ("sequence_classification", "token_classification"):
        return  # multi-label rows may be multi-hot vectors, not names
    column = label_column(spec)
    if dataset is None or column not in dataset.column_names:
        return
    try:
        encode_labels(dataset[column], spec, "evaluation", unknown_label_fix=INFERRED_LABELS_FIX)
    except LabelError as error:
        raise TaskError(f"{where}: {error}") from None


def infer_labels(values: dict[str, Any], datasets) -> list[str] | None:
    if values["type"] == "multiple_choice":
        return None
    column = values.get("label_column") or label_column(TaskSpecStub(values["type"]))
    found = set()
    for dataset in datasets:
        if dataset is None or column not in dataset.column_names:
            continue
        for value in dataset[column]:
            found.update(value if isinstance(value, (list, tuple)) else [value])
    found.discard(None)
    if not found:
        raise TaskError(f"Task {values['name']!r}: no labels given and none found in a {column!r} column; pass --labels.")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer() for v in found):
        return [str(i) for i in range(int(max(found)) + 1)]  # integer ids: names are the ids
    return sorted(str(v) for v in found)


class TaskSpecStub:
    """Just enough of a TaskSpec for `label_column` before the real spec exists."""

    def __init__(self, type: str):
        self.type, self.label_column = type, None


def _read_spec_file(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Task spec file {path!r} does not exist.")
    with open(path) as handle:
        text = handle.read()
    if path.endswith(".json"):
        values = json.loads(text)
    else:
        import yaml

        values = yaml.safe_load(text)
    if not isinstance(values, dict):
        raise TaskError(f"Task spec file {path!r} must hold a mapping of TaskSpec keys (type, labels, ...), got {type(values).__name__}.")
    return dict(values)
