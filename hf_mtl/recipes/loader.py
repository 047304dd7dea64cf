"""Reading a recipe: YAML -> `--override`s -> `${ENV}` expansion -> validated sections.

A recipe has four sections: `model:` ([`ModelArguments`] + any [`MultiTaskConfig`] field), `data:`
([`DataArguments`]), `tasks:` (a list of [`TaskEntry`]) and `training:` ([`MultiTaskTrainingArguments`]), plus an
optional `description:`. The argument dataclasses are filled with `HfArgumentParser.parse_dict`, so a recipe key
means exactly what the same command-line flag means in a Transformers example script. Everything is checked here,
before any data is loaded or any weight is read; each error names the recipe file and the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from transformers import BertConfig, HfArgumentParser

from ..configuration_multitask import MultiTaskConfig
from ..data.augmentation import AugmentationConfig
from ..data.augmentation.dataset import resolve_methods
from ..data.demo_data import demo_tasks
from ..evaluation import main_metric
from ..heads import HEADS
from ..hub.model_card import drop_secrets
from ..training.arguments import MultiTaskTrainingArguments
from .arguments import DATA_KEYS, TASK_KEYS, DataArguments, ModelArguments, TaskEntry, config_fields
from .errors import RecipeError


SECTIONS = ("description", "model", "data", "tasks", "training")
GENERATED_TASKS = [task["name"] for task in demo_tasks()]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET = re.compile(r"token|password|secret|key", re.IGNORECASE)


@dataclass
class Recipe:
    """A validated recipe. `raw` holds the sections after overrides and `${ENV}` expansion; `text` the file as written
    (for the model card: it keeps comments and never shows expanded environment variables)."""

    source: str
    text: str
    raw: dict[str, Any]
    base_dir: Path
    model_args: ModelArguments
    config_kwargs: dict[str, Any]
    data_args: DataArguments
    tasks: list[TaskEntry]
    training: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    override_keys: set[str] = field(default_factory=set)

    @property
    def description(self) -> str | None:
        return self.raw.get("description")

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def error(self, key: str | None, message: str) -> RecipeError:
        return RecipeError(self.source, key, message)

    def training_arguments(self, **changes: Any) -> MultiTaskTrainingArguments:
        """`MultiTaskTrainingArguments` of the `training:` section, with `changes` on top (e.g. another seed)."""
        return _training_arguments(self.source, {**self.training, **changes})

    def subset(self, names: list[str]) -> Recipe:
        """The same recipe restricted to some tasks (single-task runs of a transfer report). Per-task static weights
        are kept for the tasks that remain."""
        training = dict(self.training)
        kwargs = training.get("weighting_kwargs")
        if isinstance(kwargs, dict) and isinstance(kwargs.get("weights"), dict):
            training["weighting_kwargs"] = {**kwargs, "weights": {k: v for k, v in kwargs["weights"].items() if k in names}}
        raw = {**self.raw, "tasks": [t for t in self.raw.get("tasks", []) if isinstance(t, dict) and t.get("name") in names],
               "training": training}
        return dataclasses.replace(self, tasks=[task for task in self.tasks if task.name in names], training=training, raw=raw)

    def with_settings(self, model: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> Recipe:
        """The same recipe with some `model:` (config) and `training:` values replaced (e.g. a single-task baseline
        without the multi-task-only options); the values are trusted (no re-validation)."""
        config_kwargs = {**self.config_kwargs, **(model or {})}
        training = {**self.training, **(training or {})}
        raw = {**self.raw, "model": {**self.raw.get("model", {}), **(model or {})}, "training": training}
        return dataclasses.replace(self, config_kwargs=config_kwargs, training=training, raw=raw)

    def without_training_keys(self, keys: list[str]) -> Recipe:
        """The same recipe with some `training:` keys back at their defaults."""
        training = {k: v for k, v in self.training.items() if k not in keys}
        raw = {**self.raw, "training": {k: v for k, v in self.raw.get("training", {}).items() if k not in keys}}
        return dataclasses.replace(self, training=training, raw=raw)

    def resolve_path(self, key: str, value: str) -> Path:
        """Relative data paths are relative to the recipe's folder, except those given with `--override`, which
        are relative to the current directory (where the user typed them)."""
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        return (Path.cwd() if key in self.override_keys else self.base_dir) / path

    def card_text(self) -> str:
        """The recipe as written plus its overrides, with secret-named values blanked (for model cards)."""
        lines = [self.text.rstrip()]
        for override in self.overrides:
            key, _, _ = override.partition("=")
            lines.append(f"# --override {key}=<redacted>" if _SECRET.search(key) else f"# --override {override}")
        return "\n".join(lines)

    def resolved_dict(self) -> dict[str, Any]:
        """The effective recipe (after overrides and expansion) without secrets: what `recipe.yaml` saves."""
        return drop_secrets(self.raw)


def find_recipe(name: str | os.PathLike) -> Path:
    """A recipe file: a path, or the name of a recipe shipped with hf_mtl (`demo`, `glue`, `ner_intent`, ...)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    stem = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    if path.parent == Path("."):
        for folder in _shipped_folders():
            if (folder / stem).is_file():
                return folder / stem
    shipped = sorted({p.stem for folder in _shipped_folders() for p in folder.glob("*.yaml")})
    raise FileNotFoundError(
        f"Recipe {str(name)!r} not found: give the path of a YAML file, or the name of a shipped recipe "
        f"({', '.join(shipped) or 'none installed'})."
    )


def _shipped_folders() -> list[Path]:
    folders = []
    with contextlib.suppress(ModuleNotFoundError):
        folders.append(Path(str(resources.files("hf_mtl.recipe_files"))))
    folders.append(Path(__file__).resolve().parents[2] / "recipes")  # a source checkout
    return [folder for folder in folders if folder.is_dir()]


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    """Read, override, expand and validate a recipe. Raises `RecipeError` (one line: file, key, fix)."""
    file = find_recipe(path)
    source = str(path) if Path(path).expanduser().is_file() else str(file)
    text = file.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise RecipeError(source, where, f"not valid YAML: {getattr(error, 'problem', error)}.") from None
    if not isinstance(raw, dict):
        raise RecipeError(source, None, "a recipe is a YAML mapping with sections model, data, tasks, training.")
    override_keys = set()
    for override in overrides or []:
        override_keys.add(_apply_override(source, raw, override))
    raw = _expand(source, raw, "")
    return _validate(source, text, raw, file.resolve().parent, list(overrides or []), override_keys)


# ------------------------------------------------------------------------------------------ overrides, env


def _apply_override(source: str, raw: dict, override: str) -> str:
    """Apply `a.b.c=value` (value parsed as YAML: numbers, booleans, null, [lists]); returns the key path."""
    key, sep, value = override.partition("=")
    parts = [part for part in key.strip().split(".")]
    if not sep or not all(parts):
        raise RecipeError(source, key or None, f"an override is key=value with a dotted key, got {override!r}.")
    if parts[0] not in SECTIONS:
        raise RecipeError(source, key, _unknown("section", parts[0], SECTIONS))
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):  # tasks.<name or index>
            node = _task_by_name(source, node, part, ".".join(parts[: depth + 1]))
            continue
        if node.get(part) is None:
            node[part] = {} if not (depth == 0 and part == "tasks") else []
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise RecipeError(source, ".".join(parts[: depth + 1]), f"is a value ({node!r}), not a section to override into.")
    if isinstance(node, list):
        raise RecipeError(source, key, "override a task's keys (tasks.<name>.<key>=value), not a whole task.")
    node[parts[-1]] = parsed
    return ".".join(parts)


def _task_by_name(source: str, tasks: list, part: str, key: str) -> dict:
    for task in tasks:
        if isinstance(task, dict) and str(task.get("name")) == part:
            return task
    if part.isdigit() and int(part) < len(tasks):
        return tasks[int(part)]
    names = [str(task.get("name")) for task in tasks if isinstance(task, dict)]
    raise RecipeError(source, key, f"no task named {part!r}; the recipe's tasks are: {', '.join(names) or '(none)'}.")


def _expand(source: str, value: Any, key: str) -> Any:
    """`${VAR}` and `${VAR:-default}` in every string; an unset variable without default is an error."""
    if isinstance(value, dict):
        return {k: _expand(source, v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [
            _expand(source, v, f"{key}.{v.get('name', i)}" if key == "tasks" and isinstance(v, dict) else f"{key}.{i}")
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise RecipeError(
            source, key, f"environment variable {name} is not set (used in {value!r}); export {name}=... or override "
            f"the value with --override {key}=..."
        )

    return _ENV.sub(substitute, value)


# ------------------------------------------------------------------------------------------ validation


def _validate(source, text, raw, base_dir, overrides, override_keys) -> Recipe:
    unknown = [key for key in raw if key not in SECTIONS]
    if unknown:
        raise RecipeError(source, str(unknown[0]), _unknown("section", unknown[0], SECTIONS))
    for section in ("model", "data", "training"):
        if raw.get(section) is None:
            raw[section] = {}
        if not isinstance(raw[section], dict):
            raise RecipeError(source, section, f"must be a mapping of keys to values, got {raw[section]!r}.")
    if raw.get("description") is not None and not isinstance(raw["description"], str):
        raise RecipeError(source, "description", "must be a string.")

    model_section = dict(raw["model"])
    model_keys = [f.name for f in dataclasses.fields(ModelArguments)]
    allowed_config = config_fields()
    for key in model_section:
        if key not in model_keys and key not in allowed_config:
            raise RecipeError(source, f"model.{key}", _unknown("model key", key, model_keys + allowed_config))
    model_args = _parse(source, "model", ModelArguments, {k: v for k, v in model_section.items() if k in model_keys})
    _check_backbone(source, model_args.backbone)
    config_kwargs = {k: v for k, v in model_section.items() if k not in model_keys}
    data_args = _parse(source, "data", DataArguments, raw["data"])

    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise RecipeError(source, "tasks", "a recipe needs a non-empty list of tasks (each with name, type and data).")
    tasks = [_parse_task(source, i, entry) for i, entry in enumerate(tasks_raw)]
    names = [task.name for task in tasks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RecipeError(source, "tasks", f"duplicate task name(s) {duplicates}; each task needs its own name.")
    # The config fields' values, with placeholder labels (the real ones may come from the data) and a placeholder
    # encoder deep enough for any depth-dependent option (e.g. num_shared_layers): those are checked against the real
    # backbone when the model is built.
    try:
        MultiTaskConfig(encoder=BertConfig(hidden_size=8, num_hidden_layers=1024, num_attention_heads=1, intermediate_size=8),
                        tasks=[task.placeholder_spec() for task in tasks], **config_kwargs)
    except (ValueError, TypeError) as error:
        raise RecipeError(source, "model", str(error)) from None

    training = dict(raw["training"])
    training.setdefault("output_dir", str(Path("outputs") / Path(source).stem))
    for key, value in recipe_training_defaults(tasks, training).items():
        training.setdefault(key, value)
    arguments = _training_arguments(source, training)  # every key and value checked now, before any work starts
    if arguments.max_steps <= 0 and arguments.num_train_epochs <= 0:
        raise RecipeError(source, "training.num_train_epochs", f"{arguments.num_train_epochs} epochs (and no max_steps) "
                          "train nothing, and the run would save an untrained model as if trained: set "
                          "num_train_epochs > 0 or max_steps > 0.")
    return Recipe(source, text, raw, base_dir, model_args, config_kwargs, data_args, tasks, training, overrides, override_keys)


# Where a recipe's defaults differ from `MultiTaskTrainingArguments`'s (the README's transfer table measures them):
# the trainer keeps `Trainer.train()` as Transformers users know it (training steps only, one task per step, plain
# loss sum); a recipe is the whole job, so it adds the refinement stage, and trains on mixed batches with `rep_norm`
# (no task's gradient dominates the shared encoder) unless a task cannot share a batch (multiple choice).
RECIPE_TRAINING_DEFAULTS = {"refine_steps": 100, "batching": "mixed", "weighting": "rep_norm"}


def recipe_training_defaults(tasks: list[TaskEntry], training: dict[str, Any]) -> dict[str, Any]:
    """`RECIPE_TRAINING_DEFAULTS` for these tasks and the recipe's own `training` keys: one task per step when a task
    cannot share a batch, and `rep_norm` only with mixed batches (with one task per step it would equal `static`)."""
    defaults = dict(RECIPE_TRAINING_DEFAULTS)
    if not all(HEADS.get(task.type).mixable for task in tasks if task.type in HEADS):
        defaults["batching"] = "per_task"
    if training.get("batching", defaults["batching"]) != "mixed":
        defaults["weighting"] = "static"
    return defaults


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
