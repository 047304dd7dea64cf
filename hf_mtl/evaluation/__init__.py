"""Evaluation: per-task metrics (scikit-learn / seqeval, offline) and transfer reports."""

from .metrics import DEFAULT_METRIC, LOWER_IS_BETTER, METRICS_BY_TYPE, compute_task_metrics, main_metric


__all__ = ["DEFAULT_METRIC", "LOWER_IS_BETTER", "METRICS_BY_TYPE", "compute_task_metrics", "main_metric"]
