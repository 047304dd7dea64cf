"""What a card says about each task's data and results, checked, and the results as card metadata.

Results go to two places. `model-index` is the Hub's leaderboard metadata: each entry claims a Hub dataset (its id in
`dataset.type`, its configuration in `dataset.config`), so only tasks trained on a Hub dataset get one; results on
local or generated data would link to a dataset that is not theirs. Every task's results also go, keyed by task, to
the card's `hf_mtl.eval_results` metadata, which `read_eval_results` reads back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard

from .redaction import redact_tokens


# `model-index` groups results by the Hub's pipeline names.
PIPELINE_TASKS = {
    "sequence_classification": "text-classification",
    "multi_label_classification": "text-classification",
    "regression": "text-classification",
    "token_classification": "token-classification",
    "multiple_choice": "multiple-choice",
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DATA_FILE = re.compile(r"\.(jsonl?|csv|tsv|parquet|arrow|txt)$", re.IGNORECASE)
_REFERENCE_KEYS = ("description", "hub", "config", "split", "revision")


@dataclass(frozen=True)
class DatasetReference:
    """Where one task's data came from: words for the reader, and the Hub dataset when there is one."""

    description: str
    hub: str | None = None
    config: str | None = None
    split: str = "validation"
    revision: str | None = None

    @property
    def shown(self) -> str:
        return f"{self.hub} ({self.config})" if self.hub and self.config else self.description


def dataset_references(datasets: Mapping | None, names: list[str]) -> dict[str, DatasetReference]:
    """`{task: description}` or `{task: {hub, config, split, revision, description}}` (the keys of a recipe's `data:`)
    as references. A description that is a bare Hub id counts as that Hub dataset."""
    references = {}
    for task, value in check_task_mapping("datasets", datasets, names).items():
        if isinstance(value, str) and value.strip():
            text = redact_tokens(value.strip())
            references[task] = DatasetReference(text, hub=text if is_hub_dataset(text) else None)
        elif isinstance(value, Mapping) and (value.get("hub") or value.get("description")):
            unknown = [key for key in value if key not in _REFERENCE_KEYS]
            if unknown:
                raise TypeError(f"`datasets[{task!r}]` has unknown key(s) {unknown}; known: {', '.join(_REFERENCE_KEYS)}.")
            fields = {key: None if value.get(key) is None else redact_tokens(str(value[key])) for key in _REFERENCE_KEYS}
            description = fields.pop("description") or fields["hub"]
            references[task] = DatasetReference(description, **{**fields, "split": fields["split"] or "validation"})
        else:
            raise TypeError(f"`datasets[{task!r}]` must be a non-empty description, or a dict with `hub` (a Hub dataset "
                            f"id) and optionally config, split, revision, description; got {value!r}.")
    return references


def check_task_mapping(argument: str, mapping: Mapping | None, names: list[str]) -> dict:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise TypeError(f"`{argument}` must be a dict keyed by task name, got {type(mapping).__name__}: {mapping!r}.")
    unknown = [task for task in mapping if task not in names]
    if unknown:
        raise ValueError(
            f"`{argument}` names task(s) {unknown} that the model does not have; its tasks are: {', '.join(names)}."
        )
    return {task: mapping[task] for task in names if task in mapping}  # in the model's task order


def check_eval_results(eval_results: Mapping | None, names: list[str]) -> dict[str, dict[str, float]]:
    results = check_task_mapping("eval_results", eval_results, names)
    checked = {}
    for task, metrics in results.items():
        if not isinstance(metrics, Mapping):
            raise TypeError(f"`eval_results[{task!r}]` must be a dict {{metric: value}}, got {metrics!r}.")
        checked[task] = {}
        for metric, value in metrics.items():
            number = None if isinstance(value, bool) else to_float(value)
            if number is None or not math.isfinite(number):
                raise TypeError(f"`eval_results[{task!r}][{metric!r}]` must be a finite number, got {value!r}.")
            checked[task][str(metric)] = number
    return checked


def hub_eval_results(results: dict[str, dict[str, float]], references: dict[str, DatasetReference],
                     task_types: dict[str, str]) -> list[EvalResult]:
    """`model-index` entries for the tasks trained on a Hub dataset. Tasks on the same dataset, configuration, split
    and pipeline share one entry (the Hub's grouping); each metric's name says its task."""
    return [
        EvalResult(
            task_type=pipeline_task(task_types[task]),
            task_name=task,
            dataset_type=reference.hub,
            dataset_name=reference.shown,
            dataset_config=reference.config,
            dataset_split=reference.split,
            dataset_revision=reference.revision,
            metric_type=metric,
            metric_name=f"{task} {metric}",
            metric_value=value,
        )
        for task, metrics in results.items()
        if (reference := references.get(task)) is not None and reference.hub
        for metric, value in metrics.items()
    ]


def read_eval_results(card: ModelCard | str | Path) -> dict[str, dict[str, Any]]:
    """`{task: {metric: value}}` back from a card built here (a `ModelCard`, a README path or a Hub id). Cards written
    before `hf_mtl.eval_results` existed kept them in `model-index` only, the task in `task_name` or `dataset.config`."""
    if not isinstance(card, ModelCard):
        card = ModelCard.load(card)
    recorded = (getattr(card.data, "hf_mtl", None) or {}).get("eval_results")
    if recorded is not None:
        return {task: dict(metrics) for task, metrics in recorded.items()}
    results: dict[str, dict[str, Any]] = {}
    for result in card.data.eval_results or []:
        task = result.task_name or result.dataset_config
        results.setdefault(task, {})[result.metric_type] = result.metric_value
    return results


def pipeline_task(task_type: str) -> str:
    return PIPELINE_TASKS.get(task_type, task_type.replace("_", "-"))


def is_hub_dataset(text: str) -> bool:
    return bool(HUB_ID.match(text)) and not _DATA_FILE.search(text) and not Path(text).exists()


def to_float(value: Any) -> float | None:
    try:
        return float(value)  # also numpy / torch scalars
    except (TypeError, ValueError):
        return None
