"""Per-task evaluation and prediction of a `MultiTaskTrainer`: one pass per task through Trainer's `evaluation_loop`,
scored with the task type's metrics (`hf_mtl.evaluation`) and any extra metric the user gave for the task."""

from __future__ import annotations

import time

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers.trainer_utils import EvalPrediction, PredictionOutput

from ..evaluation import LOWER_IS_BETTER, compute_task_metrics, main_metric


def task_dataloader(trainer, task: str, dataset: Dataset) -> DataLoader:
    """Evaluation batches of one task, in order, collated for that task's head."""
    collate = trainer.data_collator.for_task(task) if hasattr(trainer.data_collator, "for_task") else (
        lambda features, i=trainer.task_names.index(task): trainer.data_collator([{**f, "task_id": i} for f in features])  # noqa: B008
    )
    loader = DataLoader(
        dataset,
        batch_size=trainer.args.eval_batch_size,
        collate_fn=collate,
        num_workers=trainer.args.dataloader_num_workers,
        pin_memory=trainer.args.dataloader_pin_memory and torch.cuda.is_available(),
    )
    return trainer.accelerator.prepare(loader)


def evaluate_tasks(trainer, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
    """One evaluation pass per task: `{prefix}_<task>_<metric>` for every metric of the task's type,
    `{prefix}_<task>_loss`, and `{prefix}_average` (mean of the tasks' main metrics) and `{prefix}_loss`."""
    if eval_dataset is None:
        datasets = trainer.task_eval_datasets
    else:
        datasets = trainer._prepare_split(eval_dataset, "eval", trainer.processing_class, trainer.args, require_all=False)
    if not datasets:
        raise ValueError("MultiTaskTrainer: evaluation requires `eval_dataset` (a dict of per-task datasets).")
    trainer._memory_tracker.start()
    metrics: dict[str, float] = {}
    main_scores, losses = [], []
    trainer.last_eval_metrics = {}
    for task, dataset in datasets.items():
        start = time.time()
        prefix = f"{metric_key_prefix}_{task}"
        output = trainer.evaluation_loop(
            task_dataloader(trainer, task, dataset),
            description=f"Evaluation ({task})",
            prediction_loss_only=False,
            ignore_keys=ignore_keys,
            metric_key_prefix=prefix,
        )
        scores = task_metrics(trainer, task, output.predictions, output.label_ids)
        trainer.last_eval_metrics[task] = scores
        metrics.update({f"{prefix}_{name}": value for name, value in scores.items()})
        metrics.update(output.metrics)
        metrics[f"{prefix}_runtime"] = round(time.time() - start, 4)
        main = main_metric(trainer.task_specs[task])
        if main not in LOWER_IS_BETTER:
            main_scores.append(scores[main])
        if f"{prefix}_loss" in output.metrics:
            losses.append(output.metrics[f"{prefix}_loss"])
    if main_scores:
        metrics[f"{metric_key_prefix}_average"] = float(np.mean(main_scores))
    if losses:
        metrics[f"{metric_key_prefix}_loss"] = float(np.mean(losses))
    trainer.log(metrics)
    trainer.control = trainer.callback_handler.on_evaluate(trainer.args, trainer.state, trainer.control, metrics)
    trainer._memory_tracker.stop_and_update_metrics(metrics)
    return metrics


def predict_tasks(trainer, test_dataset, ignore_keys=None, metric_key_prefix: str = "test") -> dict[str, PredictionOutput]:
    """`Trainer.predict` per task: `{task: PredictionOutput}` with that head's raw logits (`predictions`), and
    its `label_ids` and metrics (`{prefix}_<task>_<metric>`) where the data has labels. `test_dataset` is
    `{task: Dataset or DatasetDict}` (a DatasetDict gives its `test` split); rows need no labels.
    Use `hf_mtl.MultiTaskPredictor` for decoded labels and entity spans."""
    datasets = trainer._prepare_split(test_dataset, "test", trainer.processing_class, trainer.args, require_all=False)
    if not datasets:
        raise ValueError("MultiTaskTrainer.predict needs `test_dataset` (a dict of per-task datasets).")
    results = {}
    for task, dataset in datasets.items():
        prefix = f"{metric_key_prefix}_{task}"
        output = trainer.evaluation_loop(task_dataloader(trainer, task, dataset), description=f"Prediction ({task})",
                                      prediction_loss_only=False, ignore_keys=ignore_keys, metric_key_prefix=prefix)
        predictions = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        metrics = dict(output.metrics)
        if output.label_ids is not None:
            metrics.update({f"{prefix}_{name}": v for name, v in task_metrics(trainer, task, predictions, output.label_ids).items()})
        results[task] = PredictionOutput(predictions=predictions, label_ids=output.label_ids, metrics=metrics)
    return results


def task_metrics(trainer, task: str, predictions, label_ids) -> dict[str, float]:
    spec = trainer.task_specs[task]
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    task_metrics = compute_task_metrics(spec, predictions, label_ids)
    extra = trainer.extra_metrics.get(task)
    if extra is not None:
        if hasattr(extra, "compute"):  # an `evaluate` module
            decoded = predictions.argmax(-1) if spec.type in ("sequence_classification", "multiple_choice") else predictions
            result = extra.compute(predictions=decoded, references=label_ids)
        else:
            result = extra(EvalPrediction(predictions=predictions, label_ids=label_ids))
        task_metrics.update({name: float(value) for name, value in result.items() if np.isscalar(value)})
    return task_metrics
