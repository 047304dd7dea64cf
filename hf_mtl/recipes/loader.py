"""Reading a recipe: YAML -> `--override`s -> `${ENV}` expansion -> validated sections.

A recipe has four sections: `model:` ([`ModelArguments`] + any [`MultiTaskConfig`] field), `data:`
([`DataArguments`]), `tasks:` (a list of [`TaskEntry`]) and `training:` ([`MultiTaskTrainingArguments`]), plus an
optional `description:`. The argument dataclasses are filled with `HfArgumentParser.parse_dict`, so a recipe key
means exactly what the same command-line flag means in a Transformers example script. Everything is checked on
loading, before any data is loaded or any weight is read; each error names the recipe file and the key. The
section checks live in `validation.py`, the resulting `Recipe` in `recipe.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from transformers import BertConfig

from ..configuration_multitask import MultiTaskConfig
from ..heads import HEADS
from .arguments import DataArguments, ModelArguments, TaskEntry, config_fields
from .errors import RecipeError
from .recipe import Recipe
from .validation import GENERATED_TASKS as GENERATED_TASKS  # re-exported: defined here before the split
from .validation import _check_backbone, _parse, _parse_task, _training_arguments, _unknown


SECTIONS = ("description", "model", "data", "tasks", "training")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
    config_kwargs.update(recipe_model_defaults(config_kwargs))
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
# (no task's gradient dominates the shared encoder) unless a task cannot share a batch (multiple choice). Batches
# stay random: grouping rows by length trains a third faster but scored lower on 3 of 5 dev-suite tasks (README).
RECIPE_TRAINING_DEFAULTS = {"refine_steps": 100, "batching": "mixed", "weighting": "rep_norm"}


# Where a recipe's model defaults differ from `MultiTaskConfig`'s: a recipe that names no sharing scheme trains a
# shared encoder with one LoRA adapter per task on its top two layers (every linear layer there, rank 16; 1.07x the
# parameters of one model), the adapters at 10x the learning rate like the heads. Over six dev-suite seeds it gained
# +2.17 points on single-task runs against hard sharing's +1.45, with each tagger and intent ahead on every seed, and
# its encoders transfer to a held-out task at least as well as the raw backbone (README). `MultiTaskConfig` keeps hard
# sharing: a model built in code is the plain shared encoder Transformers users expect.
RECIPE_MODEL_DEFAULTS = {
    "sharing": "lora",
    "sharing_kwargs": {"freeze_backbone": False, "top_layers": 2, "r": 16, "lora_alpha": 32,
                       "learning_rate_multiplier": 10.0},
}


def recipe_model_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """`RECIPE_MODEL_DEFAULTS` for a recipe's `model:` config keys: none when the recipe names a sharing scheme; when it
    gives only `sharing_kwargs`, those tune the default scheme (e.g. `-o model.sharing_kwargs.r=8`) on top of its
    default options."""
    if "sharing" in config:
        return {}
    options = config.get("sharing_kwargs")
    if options is None:
        options = {}
    # A value that is not a mapping is passed on as given: `MultiTaskConfig` refuses it, naming the value.
    kwargs = {**RECIPE_MODEL_DEFAULTS["sharing_kwargs"], **options} if isinstance(options, dict) else options
    return {"sharing": RECIPE_MODEL_DEFAULTS["sharing"], "sharing_kwargs": kwargs}


def recipe_training_defaults(tasks: list[TaskEntry], training: dict[str, Any]) -> dict[str, Any]:
    """`RECIPE_TRAINING_DEFAULTS` for these tasks and the recipe's own `training` keys: one task per step when a task
    cannot share a batch, and `rep_norm` only with mixed batches (with one task per step it would equal `static`)."""
    defaults = dict(RECIPE_TRAINING_DEFAULTS)
    if not all(HEADS.get(task.type).mixable for task in tasks):  # types are checked when the tasks are parsed
        defaults["batching"] = "per_task"
    if training.get("batching", defaults["batching"]) != "mixed":
        defaults["weighting"] = "static"
    return defaults

