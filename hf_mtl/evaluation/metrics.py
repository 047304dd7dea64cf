"""Per-task metrics computed offline with scikit-learn and seqeval (no `evaluate` Hub scripts).

Each task type has a set of metrics it always reports and a default *main* metric (the one averaged across tasks
and used for transfer tables); `TaskSpec.metric` picks another main metric from the same set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.metrics import precision_score as seqeval_precision
from seqeval.metrics import recall_score as seqeval_recall
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, mean_squared_error

from ..errors import TaskError
from ..tasks import TaskSpec


METRICS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "sequence_classification": ("accuracy", "f1", "mcc"),
    "multi_label_classification": ("micro_f1", "macro_f1", "subset_accuracy"),
    "regression": ("pearson", "spearman", "mse"),
    "token_classification": ("f1", "precision", "recall", "accuracy"),
    "multiple_choice": ("accuracy",),
}
DEFAULT_METRIC: dict[str, str] = {
    "sequence_classification": "accuracy",
    "multi_label_classification": "micro_f1",
    "regression": "pearson",
    "token_classification": "f1",
    "multiple_choice": "accuracy",
}
LOWER_IS_BETTER = {"mse"}


def main_metric(task: TaskSpec) -> str:
    """The task's main metric, validated against its type (a clear error for e.g. `pearson` on NER)."""
    metric = task.metric or DEFAULT_METRIC[task.type]
    if metric not in METRICS_BY_TYPE[task.type]:
        raise TaskError(
            f"Task {task.name!r} ({task.type}) cannot use metric {metric!r}. "
            f"Choose one of: {', '.join(METRICS_BY_TYPE[task.type])}."
        )
    return metric


def _sequence_classification(logits, labels, task):
    keep = labels != -100
    predictions, labels = logits.argmax(-1)[keep], labels[keep]
    average = "binary" if len(task.labels) == 2 else "macro"
    return {
        "accuracy": accuracy_score(labels, predictions),
        "f1": f1_score(labels, predictions, average=average, zero_division=0),
        "mcc": matthews_corrcoef(labels, predictions) if len(np.unique(labels)) > 1 else 0.0,
    }


def _multi_label(logits, labels, task):
    predictions = (logits > 0).astype(int)  # sigmoid(x) > 0.5
    labels = labels.astype(int)
    return {
        "micro_f1": f1_score(labels, predictions, average="micro", zero_division=0),
        "macro_f1": f1_score(labels, predictions, average="macro", zero_division=0),
        "subset_accuracy": accuracy_score(labels, predictions),
    }


def _regression(predictions, labels, task):
    predictions, labels = predictions.reshape(-1).astype(float), labels.reshape(-1).astype(float)
    constant = np.std(predictions) == 0 or np.std(labels) == 0
    return {
        "pearson": 0.0 if constant else float(pearsonr(predictions, labels)[0]),
        "spearman": 0.0 if constant else float(spearmanr(predictions, labels)[0]),
        "mse": mean_squared_error(labels, predictions),
    }


def _token_classification(logits, labels, task):
    predictions = logits.argmax(-1)
    names = task.labels
    true_tags, predicted_tags = [], []
    for row_predictions, row_labels in zip(predictions, labels):
        keep = row_labels != -100
        true_tags.append([names[i] for i in row_labels[keep]])
        predicted_tags.append([names[i] for i in row_predictions[keep]])
    flat_true = np.concatenate([labels[labels != -100]]) if labels.size else np.array([])
    flat_pred = predictions[labels != -100]
    return {
        "f1": seqeval_f1(true_tags, predicted_tags, zero_division=0),
        "precision": seqeval_precision(true_tags, predicted_tags, zero_division=0),
        "recall": seqeval_recall(true_tags, predicted_tags, zero_division=0),
        "accuracy": accuracy_score(flat_true, flat_pred) if flat_true.size else 0.0,
    }


def _multiple_choice(logits, labels, task):
    keep = labels != -100
    return {"accuracy": accuracy_score(labels[keep], logits.argmax(-1)[keep])}


_COMPUTE: dict[str, Callable] = {
    "sequence_classification": _sequence_classification,
    "multi_label_classification": _multi_label,
    "regression": _regression,
    "token_classification": _token_classification,
    "multiple_choice": _multiple_choice,
}


def compute_task_metrics(task: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All metrics of `task`'s type from raw head outputs (logits) and labels in the head's format."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape[0] == 0:
        raise ValueError(f"Task {task.name!r}: no predictions to score (empty evaluation split).")
    return {name: float(value) for name, value in _COMPUTE[task.type](predictions, labels, task).items()}
