"""The `Recipe` a loaded recipe file becomes, and what callers derive from it (training arguments, task subsets,
changed settings, paths, model-card text).

Kept apart from `loader.py` so that the many modules that only take a `Recipe` (running, data, reports) do not pull in
the YAML reading and override machinery, and so the loader reads as the pipeline it is. This module must not import
`loader.py` (that imports it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hub.redaction import SECRET_KEY, drop_secrets
from ..training.arguments import MultiTaskTrainingArguments
from .arguments import DataArguments, ModelArguments, TaskEntry
from .errors import RecipeError
from .validation import _training_arguments


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
    def default_sharing(self) -> bool:
        """Whether the recipe names no sharing scheme, so the loader's `RECIPE_MODEL_DEFAULTS` apply."""
        return "sharing" not in (self.raw.get("model") or {})

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
        parts = key.split(".")
        overridden = any(".".join(parts[:end]) in self.override_keys for end in range(1, len(parts) + 1))
        return (Path.cwd() if overridden else self.base_dir) / path  # `-o tasks.x.data={train: f}` counts too

    def card_text(self) -> str:
        """The recipe as written plus its overrides, with secret-named values blanked (for model cards)."""
        lines = [self.text.rstrip()]
        for override in self.overrides:
            key, _, _ = override.partition("=")
            lines.append(f"# --override {key}=<redacted>" if SECRET_KEY.search(key) else f"# --override {override}")
        return "\n".join(lines)

    def resolved_dict(self) -> dict[str, Any]:
        """The effective recipe (after overrides and expansion) without secrets: what `recipe.yaml` saves."""
        return drop_secrets(self.raw)
