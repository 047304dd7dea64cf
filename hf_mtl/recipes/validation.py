"""Checking a recipe's parts: one task entry and its data, the backbone, and an argument dataclass filled from a
section (with YAML's strings coerced to the field types). Each check raises `RecipeError` naming the file and the key.

Kept apart from `loader.py`, which reads, overrides and expands the file and then calls these section by section:
the checks are the bulk of the code, and `Recipe.training_arguments` needs them without importing the loader.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import re
import types
import typing
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from ..data.augmentation import AugmentationConfig
from ..data.augmentation.dataset import resolve_methods
from ..data.demo_data import demo_tasks
from ..evaluation import main_metric
from ..heads import HEADS
from ..training.arguments import MultiTaskTrainingArguments
from .arguments import DATA_KEYS, LABELS_FROM, TASK_KEYS, TaskEntry
from .errors import RecipeError


GENERATED_TASKS = [task["name"] for task in demo_tasks()]


def _check_backbone(source: str, backbone: str) -> None:
    """A backbone written as a local path must exist: otherwise transformers reads it as a Hub id and answers with
    "repo id must be in the form ...", which names neither the cause nor the fix."""
    if backbone in ("minilm", "tiny"):
        return
    path = Path(backbone).expanduser()
    looks_local = backbone.startswith(("/", "./", "../", "~", ".\\")) or backbone.count("/") > 1 or "\\" in backbone
    if looks_local and not path.exists():
        raise RecipeError(source, "model.backbone", f"no folder {backbone!r} (relative paths start from the current "
                          "directory): give a saved model folder, a Hub id such as 'bert-base-uncased' or "
                          "'org/name', or 'minilm' (offline default).")
    if path.is_dir() and not (path / "config.json").is_file():
        raise RecipeError(source, "model.backbone", f"{backbone!r} is a folder without config.json: point at the "
                          "folder that `save_pretrained` wrote.")


def _parse_task(source: str, index: int, entry: Any) -> TaskEntry:
    if not isinstance(entry, dict):
        raise RecipeError(source, f"tasks.{index}", f"a task is a mapping with name, type and data; got {entry!r}.")
    key = f"tasks.{entry.get('name', index)}"
    for name in entry:
        if name not in TASK_KEYS:
            raise RecipeError(source, f"{key}.{name}", _unknown("task key", name, TASK_KEYS))
    for name in ("name", "type", "data"):
        if entry.get(name) is None:
            raise RecipeError(source, f"{key}.{name}", "is required (every task has a name, a type and its data).")
    if entry["type"] not in HEADS:
        raise RecipeError(source, f"{key}.type", HEADS.unknown_message(entry["type"]))
    labels = entry.get("labels")
    if labels is not None and (not isinstance(labels, list) or not labels):
        raise RecipeError(source, f"{key}.labels", f"must be a list of label names, got {labels!r}.")
    if labels is not None:
        labels = [str(label) for label in labels]  # YAML reads `yes` / `1` as bool / int
    labels_from = entry.get("labels_from", "train")
    if labels_from not in LABELS_FROM:
        raise RecipeError(source, f"{key}.labels_from", _unknown("labels_from", labels_from, LABELS_FROM))
    text_columns = entry.get("text_columns")
    if isinstance(text_columns, str):
        text_columns = [text_columns]
    task = TaskEntry(
        name=str(entry["name"]),
        type=entry["type"],
        data=_check_data(source, f"{key}.data", entry["data"]),
        labels=labels,
        text_columns=text_columns,
        label_column=entry.get("label_column"),
        metric=entry.get("metric"),
        pooling=entry.get("pooling"),
        input_group=None if entry.get("input_group") is None else str(entry["input_group"]),
        augment=entry.get("augment"),
        labels_from=labels_from,
    )
    try:
        spec = task.placeholder_spec()
    except ValueError as error:
        raise RecipeError(source, key, str(error)) from None
    try:
        main_metric(spec)
    except ValueError as error:
        raise RecipeError(source, f"{key}.metric", str(error)) from None
    if task.augment is not None:
        try:
            config = AugmentationConfig.from_dict(task.augment)
            resolve_methods(spec, config.methods)
        except ValueError as error:
            raise RecipeError(source, f"{key}.augment", str(error)) from None
    return task


def _check_data(source: str, key: str, data: Any) -> dict:
    if isinstance(data, str):  # shorthand: a Hub id or one training file
        data = {"train": data} if Path(data).suffix.lower() in (".json", ".jsonl", ".csv", ".tsv", ".parquet") else {"hub": data}
    if not isinstance(data, dict):
        raise RecipeError(source, key, f"must be a mapping (hub: <id>, or train: <file>, or generated: <task>), got {data!r}.")
    for name in data:
        if name not in DATA_KEYS:
            raise RecipeError(source, f"{key}.{name}", _unknown("data key", name, DATA_KEYS))
    kinds = [kind for kind in ("hub", "generated") if data.get(kind) is not None]
    if len(kinds) > 1:
        raise RecipeError(source, key, "give either `hub` (a Hub dataset) or `generated` (demo data), not both.")
    if "generated" in kinds:
        if data["generated"] not in GENERATED_TASKS:
            raise RecipeError(source, f"{key}.generated", _unknown("generated task", data["generated"], list(GENERATED_TASKS)))
        extra = [name for name in data if name != "generated"]
        if extra:
            raise RecipeError(source, f"{key}.{extra[0]}", "generated data has its own splits; drop this key.")
    elif not kinds and data.get("train") is None:
        raise RecipeError(source, f"{key}.train", "is required: a training file (json, jsonl, csv, tsv or parquet), "
                          "or set `hub: <dataset id>` or `generated: <demo task>`.")
    if data.get("format") is not None and data["format"] not in ("json", "csv", "parquet"):
        raise RecipeError(source, f"{key}.format", _unknown("format", data["format"], ["json", "csv", "parquet"]))
    return dict(data)


def _parse(source: str, section: str, cls, values: dict):
    values = _coerce(source, section, cls, values)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for name in values:
        if name not in known:
            raise RecipeError(source, f"{section}.{name}", _unknown(f"{section} key", name, known))
    try:
        (parsed,) = HfArgumentParser(cls).parse_dict(values, allow_extra_keys=False)
    except (ValueError, TypeError) as error:
        named = re.match(r"`(\w+)`", str(error))  # our checks start with the field's name: point at its key
        key = f"{section}.{named.group(1)}" if named and named.group(1) in known else section
        raise RecipeError(source, key, str(error)) from None
    return parsed


def _training_arguments(source: str, values: dict) -> MultiTaskTrainingArguments:
    return _parse(source, "training", MultiTaskTrainingArguments, values)


def _coerce(source: str, section: str, cls, values: dict) -> dict:
    """YAML reads `1e-4` (no dot) as a string: turn strings into the field's number / bool type, or fail clearly."""
    hints = typing.get_type_hints(cls)
    result = dict(values)
    for name, value in values.items():
        if name not in hints:
            continue
        hint = hints[name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
        textual = str in options or any(isinstance(o, type) and issubclass(o, enum.Enum) for o in options)
        if name == "resume_from_checkpoint" and isinstance(value, bool):
            # `true`: the newest complete checkpoint in output_dir (what `trainer.train(resume_from_checkpoint=True)`
            # does); `false`: start afresh. Trainer's field is a string, so YAML's booleans are kept as such here.
            result[name] = True if value else None
            continue
        if isinstance(value, bool) and bool not in options and textual:
            # YAML 1.1 reads a bare `no` as false: `eval_strategy: no` means the strategy "no".
            result[name] = "no" if value is False else "yes"
            continue
        if not isinstance(value, str) or str in options:
            continue
        for kind in (int, float):
            if kind in options:
                try:
                    result[name] = kind(float(value)) if kind is int and float(value).is_integer() else kind(value)
                    break
                except ValueError:
                    continue
        else:
            if bool in options and value.lower() in ("true", "false"):
                result[name] = value.lower() == "true"
            elif int in options or float in options or bool in options:
                kind = "a number" if bool not in options else "true or false"
                raise RecipeError(source, f"{section}.{name}", f"expected {kind}, got {value!r}.")
    return result


def _unknown(kind: str, value: Any, choices) -> str:
    message = f"unknown {kind} {value!r}."
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    if close:
        message += f" Did you mean {close[0]!r}?"
    shown = list(choices)
    return message + (f" Known: {', '.join(map(str, shown))}." if len(shown) <= 30 else " See the class's documentation.")
