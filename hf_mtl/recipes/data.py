"""Loading each task's data for a recipe: Hub datasets, local files or generated demo data, normalised so every
source looks the same downstream, checked against the task, and augmented (training split only).

Normalisation (so the trainer never sees a source's quirks):
- csv/tsv text comes back as `large_string`: cast to `string`.
- token classification: a text or tag column that holds a string (csv, ATIS-style Hub sets) is split on whitespace.
- sentence-level tasks: a text column that holds a list of words (a token-level dataset reused for intents) is
  joined with spaces.

Label inference, when a task gives no `labels`: the names of a `ClassLabel` feature if the data has one; otherwise
the distinct values of the training split, sorted (for tags, `O` first); integer labels without names become
`"0" .. "<max>"`. A validation or test label outside that set is an error naming the file, the row and the value, not
a class without a training row. `labels_from: all_splits` reads the values of every loaded split instead (when a
benchmark's public splits are known to differ, e.g. ATIS). Whenever the training-split rule succeeds, both rules give
the same labels. Regression and multiple choice need no labels.
"""

from __future__ import annotations

import codecs
import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import ClassLabel, Dataset, Value, load_dataset

from ..data import encode_labels, label_column, text_columns
from ..data.augmentation import AugmentationConfig
from ..data.demo_data import demo_datasets
from ..data.preprocessing import UNKNOWN_LABEL_FIX
from ..errors import UnknownLabelError
from ..tasks import TaskSpec
from .arguments import DATA_FORMATS, TaskEntry
from .loader import Recipe


NO_LABELS = ("regression", "multiple_choice")
SPLITS = ("train", "validation", "test")


@dataclass
class TaskData:
    """One task's loaded data. `sources[split]` says where a split came from (a file as written in the recipe, or
    `<hub id>[<split>]`), for error messages; `description` is what the model card says about the data, and
    `card_dataset` what `build_model_card(datasets=...)` takes (for a Hub dataset: its id, config, split, revision)."""

    spec: TaskSpec
    splits: dict[str, Dataset]
    sources: dict[str, str] = field(default_factory=dict)
    description: str = ""
    hub: dict[str, str] | None = None

    @property
    def card_dataset(self) -> str | dict[str, str]:
        return self.hub or self.description


def load_recipe_data(recipe: Recipe, splits=("train", "validation"), specs: dict[str, TaskSpec] | None = None) -> dict[str, TaskData]:
    """Load every task of `recipe`. `specs` (e.g. a trained model's) fixes labels and columns instead of the recipe."""
    return {task.name: load_task_data(recipe, task, splits, (specs or {}).get(task.name)) for task in recipe.tasks}


def load_task_data(recipe: Recipe, task: TaskEntry, splits=("train", "validation"), spec: TaskSpec | None = None) -> TaskData:
    key = f"tasks.{task.name}"
    data = _raw_splits(recipe, task, splits)
    raw, sources = {split: value[0] for split, value in data.items()}, {split: value[1] for split, value in data.items()}
    if "train" in splits and "train" not in raw:
        raise recipe.error(f"{key}.data", "no training split was found for this task.")
    limits = {"train": recipe.data_args.max_train_samples, "validation": recipe.data_args.max_eval_samples,
              "test": recipe.data_args.max_eval_samples}
    given = spec is not None or task.labels is not None
    base = spec or task.placeholder_spec()
    for split, dataset in list(raw.items()):
        if limits[split] is not None and len(dataset) > limits[split]:
            dataset = dataset.select(range(limits[split]))
        raw[split] = normalise(dataset, base)
        check_columns(recipe, key, base, raw[split], sources[split])
    if spec is None:
        labeled = {"train": raw["train"]} if task.labels_from == "train" and "train" in raw else raw
        labels = task.labels if task.labels is not None or task.type in NO_LABELS else infer_labels(recipe, key, task, labeled)
        spec = task.spec(labels=labels)
    for split, dataset in raw.items():
        check_labels(recipe, key, spec, dataset, sources[split], split, given=given)
    if task.augment is not None and "train" in raw:
        try:
            raw["train"] = AugmentationConfig.from_dict(task.augment).apply(raw["train"], spec)
        except ValueError as error:
            raise recipe.error(f"{key}.augment", str(error)) from None
    hub = None
    if task.source_kind == "hub":
        hub = {"hub": task.data["hub"], "config": task.data.get("config"), "revision": task.data.get("revision"),
               "split": str(task.data.get("validation", "validation"))}
        hub = {key: value for key, value in hub.items() if value is not None}
    return TaskData(spec=spec, splits=raw, sources=sources, description=_describe(recipe, task, raw), hub=hub)


# ------------------------------------------------------------------------------------------ sources


def _raw_splits(recipe: Recipe, task: TaskEntry, splits) -> dict[str, tuple[Dataset, str]]:
    data, key = task.data, f"tasks.{task.name}.data"
    if task.source_kind == "generated":
        args = recipe.data_args
        name = data["generated"]
        generated = demo_datasets(args.generated_train_size, args.generated_eval_size, args.generated_seed, tasks=[name],
                                  held_out_words=args.generated_held_out_words)[name]
        return {split: (generated[split], f"generated:{name}[{split}]") for split in splits if split in generated}
    if task.source_kind == "hub":
        result = {}
        for split in splits:
            explicit = split in data
            name = data.get(split, split if split != "test" else None)
            if name is None:
                continue
            dataset = _load_hub(recipe, key, data, str(name), explicit or split == "train")
            if dataset is not None:
                result[split] = (dataset, f"{data['hub']}[{name}]")
        return result
    result = {}
    for split in splits:
        if data.get(split) is not None:
            result[split] = (load_files(recipe, f"{key}.{split}", data[split], data.get("format")), _shown(data[split]))
    return result


def _load_hub(recipe: Recipe, key: str, data: dict, split: str, required: bool) -> Dataset | None:
    hub_id, config = data["hub"], data.get("config")
    named = f"{hub_id!r}" + (f" (config {config!r})" if config else "")
    try:
        return load_dataset(hub_id, config, split=split, revision=data.get("revision"), cache_dir=recipe.data_args.cache_dir)
    except ConnectionError:
        raise recipe.error(
            f"{key}.hub",
            f"could not load the Hub dataset {named}: the Hugging Face Hub is not reachable (offline?). This dataset needs "
            f"the Hub, or local files instead: set {key}.train / {key}.validation to json, jsonl, csv or parquet files.",
        ) from None
    except ValueError as error:
        if "split" in str(error).lower() and not required:
            return None  # e.g. no `validation` split: the task is simply not evaluated
        raise recipe.error(f"{key}.{split}", f"Hub dataset {named}: {error}") from None
    except Exception as error:  # datasets raises many kinds (missing dataset, gated, bad config): keep its words
        raise recipe.error(f"{key}.hub", f"could not load the Hub dataset {named}: {type(error).__name__}: {error}") from None


def load_files(recipe: Recipe | None, key: str, value: Any, fmt: str | None = None) -> Dataset:
    """One split from local files (a path, a glob or a list of paths), with clear errors for missing files."""
    values = value if isinstance(value, list) else [value]
    paths: list[str] = []
    for item in values:
        path = recipe.resolve_path(key, str(item)) if recipe is not None else Path(str(item)).expanduser()
        matches = sorted(glob.glob(str(path))) if any(c in str(item) for c in "*?[") else [str(path)] if path.is_file() else []
        if not matches:
            raise _error(recipe, key, f"data file {str(item)!r} not found (looked for {path}). Fix the path or create the file.",
                         FileNotFoundError)
        paths.extend(matches)
    suffixes = {Path(p).suffix.lower() for p in paths}
    builder = fmt or (DATA_FORMATS.get(suffixes.pop()) if len(suffixes) == 1 else None)
    if builder is None:
        raise _error(recipe, key, f"cannot tell the format of {[Path(p).name for p in paths]}: use .json, .jsonl, .csv, "
                     ".tsv or .parquet files (all of one kind), or set `format:` (json, csv or parquet).")
    kwargs = {"delimiter": "\t"} if builder == "csv" and all(p.lower().endswith(".tsv") for p in paths) else {}
    if builder in ("json", "csv"):
        for path in paths:
            problem = text_file_problem(path)
            if problem:
                raise _error(recipe, key, problem)
    try:
        return load_dataset(builder, data_files={"data": paths}, split="data", **kwargs)
    except Exception as error:  # a malformed file: name it, and the line when it is one bad JSON line
        located = next(filter(None, (json_lines_problem(path) for path in paths)), None) if builder == "json" else None
        raise _error(recipe, key, located or f"could not read {[Path(p).name for p in paths]} as {builder}: "
                     f"{type(error).__name__}: {error}") from None


def text_file_problem(path: str) -> str | None:
    """Why a json/csv file cannot hold rows, found before `datasets` reads it: empty, or not UTF-8 (with the line)."""
    line = 1
    with open(path, "rb") as handle:
        decoder = codecs.getincrementaldecoder("utf-8")()
        empty = True
        while chunk := handle.read(1 << 20):
            empty = empty and not chunk.strip()
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:  # error.object: the bytes held back from the last chunk + this one
                line += error.object[: error.start].count(b"\n")
                return (f"{path} is not UTF-8 text: line {line} has the byte 0x{error.object[error.start]:02X}. Save the file as UTF-8 "
                        f"(e.g. `iconv -f latin1 -t utf-8 {Path(path).name} > fixed.{Path(path).suffix.lstrip('.')}`).")
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"{path} is not UTF-8 text: it ends inside a multi-byte character (line {line}). Save it as UTF-8."
    if empty:
        return f"{path} is empty: it holds no rows. Fill it, or remove it from the recipe."
    return None


def json_lines_problem(path: str) -> str | None:
    """The first line of a JSON-lines file that is not one JSON object, with the parser's reason (1-based line)."""
    with open(path, encoding="utf-8") as handle:
        first = handle.read(1 << 16).lstrip()[:1]
        if first == "[":  # one JSON document, not lines: datasets' own message says enough
            return None
        handle.seek(0)
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            line = line.rstrip("\r\n")
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                where = "at the end of the line" if error.pos >= len(line.rstrip()) else f"at column {error.pos + 1}"
                return (f"{path}, line {number}: not valid JSON ({error.msg} {where}). Each line of a "
                        "JSON-lines file is one object such as {\"text\": \"...\", \"label\": \"...\"}: fix or remove the line.")
            if not isinstance(row, dict):
                return f"{path}, line {number}: a JSON {type(row).__name__}, not an object {{column: value, ...}}."
    return None


def _error(recipe: Recipe | None, key: str, message: str, kind=ValueError) -> Exception:
    return recipe.error(key, message) if recipe is not None else kind(f"{key}: {message}")


def _shown(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


# ------------------------------------------------------------------------------------------ normalisation, checks


def normalise(dataset: Dataset, spec: TaskSpec) -> Dataset:
    """Make every source look alike (see the module docstring)."""
    features = dataset.features.copy()
    large = [name for name, feature in features.items() if isinstance(feature, Value) and feature.dtype == "large_string"]
    if large:
        for name in large:
            features[name] = Value("string")
        dataset = dataset.cast(features)
    columns = [c for c in text_columns(spec) if c in dataset.column_names]
    labels = label_column(spec)
    if spec.type == "token_classification":
        to_split = [c for c in columns[:1] + [labels] if c in dataset.column_names and _holds(dataset, c, str)]
        if to_split:
            dataset = dataset.map(lambda row: {c: row[c].split() for c in to_split}, desc=f"Splitting {spec.name} words")
    elif spec.type != "multiple_choice":
        to_join = [c for c in columns if _holds(dataset, c, list)]
        if to_join:
            dataset = dataset.map(lambda row: {c: " ".join(map(str, row[c])) for c in to_join}, desc=f"Joining {spec.name} words")
    return dataset


def _holds(dataset: Dataset, column: str, kind: type) -> bool:
    return len(dataset) > 0 and isinstance(dataset[0][column], kind)


def check_columns(recipe: Recipe | None, key: str, spec: TaskSpec, dataset: Dataset, source: str) -> None:
    if len(dataset) == 0:
        raise _error(recipe, f"{key}.data", f"{source} has no rows; give the task at least one example.")
    available = ", ".join(dataset.column_names)
    for column in text_columns(spec):
        if column not in dataset.column_names:
            raise _error(recipe, f"{key}.text_columns", f"column {column!r} is not in {source} (its columns: {available}). "
                         "Set text_columns to the column(s) holding the text.")
    column = label_column(spec)
    if column not in dataset.column_names:
        raise _error(recipe, f"{key}.label_column", f"column {column!r} is not in {source} (its columns: {available}). "
                     "Set label_column to the column holding the labels.")


def infer_labels(recipe: Recipe, key: str, task: TaskEntry, raw: dict[str, Dataset]) -> list[str]:
    column = label_column(task.placeholder_spec())
    feature = next(iter(raw.values())).features.get(column)
    inner = getattr(feature, "feature", feature)
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    values: set = set()
    for dataset in raw.values():
        for value in dataset[column]:
            if task.type in ("token_classification", "multi_label_classification") and isinstance(value, list):
                values.update(value)
            elif value is not None:
                values.add(value)
    if not values:
        raise recipe.error(f"{key}.labels", f"cannot infer the labels: column {column!r} holds no values. List them in `labels`.")
    if all(isinstance(v, (bool, int, float)) and float(v).is_integer() for v in values):
        if task.type == "multi_label_classification":  # multi-hot rows: one name per position
            width = len(next(iter(raw.values()))[column][0])
            return [str(i) for i in range(width)]
        return [str(i) for i in range(int(max(values)) + 1)]
    if not all(isinstance(v, str) for v in values):
        raise recipe.error(f"{key}.labels", f"cannot infer label names from mixed values {sorted(map(repr, values))[:5]}; "
                           "list them in `labels`.")
    names = sorted(values)
    if task.type == "token_classification" and "O" in names:
        names = ["O"] + [name for name in names if name != "O"]
    return names


INFERRED_LABELS_FIX = ("The labels were read off the training split: fix the row, or keep the label as a class without "
                       "training rows by listing every label under `labels` or setting `labels_from: all_splits`.")


def check_labels(recipe: Recipe | None, key: str, spec: TaskSpec, dataset: Dataset, source: str, split: str, given: bool) -> None:
    """Every label of the split must be in the label set (checked now, not mid-training)."""
    if spec.type == "multiple_choice":
        return
    words = dataset[text_columns(spec)[0]] if spec.type == "token_classification" else None
    inferred_elsewhere = not given and split != "train"  # the label set was read off the training split
    fix = INFERRED_LABELS_FIX if inferred_elsewhere else UNKNOWN_LABEL_FIX
    try:
        encode_labels(dataset[label_column(spec)], spec, split, tokens=words, unknown_label_fix=fix)
    except ValueError as error:
        unknown_here = inferred_elsewhere and isinstance(error, UnknownLabelError)
        target = f"{key}.labels" if given or unknown_here else f"{key}.label_column"
        raise _error(recipe, target, f"{source}: {error}") from None


def _describe(recipe: Recipe, task: TaskEntry, raw: dict[str, Dataset]) -> str:
    counts = " / ".join(f"{len(dataset)} {split}" for split, dataset in raw.items())
    if task.source_kind == "generated":
        return (f"generated: hf_mtl.data.demo_data '{task.data['generated']}' (seed {recipe.data_args.generated_seed}), {counts} "
                + ("rows; validation rows use held-out words" if recipe.data_args.generated_held_out_words else "rows"))
    if task.source_kind == "hub":
        return task.data["hub"]  # a bare Hub id: the card links it
    files = [Path(str(v)).name for split in SPLITS for v in _as_list(task.data.get(split))]
    return f"local files {', '.join(files)} ({counts} rows)"


def _as_list(value: Any) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]
