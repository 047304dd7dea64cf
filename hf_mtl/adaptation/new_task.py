"""Teach a trained multi-task model a new task: add its head, freeze by rules, rehearse the old tasks, and report
the old tasks' metrics before and after so forgetting is measured, not guessed."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from transformers import set_seed
from transformers.utils import logging

from ..errors import TaskError
from ..evaluation import LOWER_IS_BETTER, main_metric
from ..modeling_multitask import MultiTaskModel
from ..tasks import TaskSpec
from ..training.arguments import MultiTaskTrainingArguments
from ..training.trainer import MultiTaskTrainer
from .freezing import FreezeReport, apply_freeze


logger = logging.get_logger(__name__)

REPORT_JSON = "transfer_report.json"
REPORT_MARKDOWN = "transfer_report.md"


@dataclass
class NewTaskReport:
    """Metrics of every evaluated task before and after learning `new_task`, and what was trained.

    `before[task]` / `after[task]` hold the task's metrics (`accuracy`, `f1`, ...); `main_metrics[task]` names the
    one compared in `deltas()`. The new task's "before" is its freshly initialised head (a chance-level baseline).
    """

    new_task: str
    freeze: dict[str, Any]
    rehearsal_ratio: float
    rehearsed_tasks: list[str]
    main_metrics: dict[str, str]
    before: dict[str, dict[str, float]] = field(default_factory=dict)
    after: dict[str, dict[str, float]] = field(default_factory=dict)

    def deltas(self) -> dict[str, float]:
        """`after - before` of each task's main metric (negative = worse, except for lower-is-better metrics)."""
        return {
            task: self.after[task][metric] - self.before[task][metric]
            for task, metric in self.main_metrics.items()
            if task in self.before and task in self.after
        }

    def forgetting(self) -> dict[str, float]:
        """How much each OLD task lost on its main metric (positive = forgot; 0 when it improved)."""
        result = {}
        for task, delta in self.deltas().items():
            if task == self.new_task:
                continue
            loss = delta if self.main_metrics[task] in LOWER_IS_BETTER else -delta
            result[task] = max(loss, 0.0)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "new_task": self.new_task,
            "freeze": self.freeze,
            "rehearsal_ratio": self.rehearsal_ratio,
            "rehearsed_tasks": self.rehearsed_tasks,
            "main_metrics": self.main_metrics,
            "before": self.before,
            "after": self.after,
            "deltas": self.deltas(),
            "forgetting": self.forgetting(),
        }

    def to_markdown(self) -> str:
        freeze = self.freeze
        lines = [
            f"# Transfer to `{self.new_task}`",
            "",
            f"- Freeze rules: {', '.join(freeze.get('rules') or []) or 'none'} — trainable parameters "
            f"{freeze.get('trainable_parameters', 0):,} of {freeze.get('total_parameters', 0):,} "
            f"({100 * freeze.get('trainable_fraction', 0):.2f}%)",
            f"- Rehearsal: {self.rehearsal_ratio:.0%} of draws on "
            + (", ".join(f"`{t}`" for t in self.rehearsed_tasks) if self.rehearsed_tasks and self.rehearsal_ratio else "no old task"),
            "",
            "| task | metric | before | after | change |",
            "|---|---|---|---|---|",
        ]
        for task, metric in self.main_metrics.items():
            if task not in self.after:
                continue
            before = self.before.get(task, {}).get(metric)
            after = self.after[task][metric]
            label = f"`{task}` (new)" if task == self.new_task else f"`{task}`"
            change = f"{after - before:+.4f}" if before is not None else "—"
            before_text = f"{before:.4f}" if before is not None else "—"
            lines.append(f"| {label} | {metric} | {before_text} | {after:.4f} | {change} |")
        return "\n".join(lines) + "\n"

    def save(self, output_dir: str) -> None:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, REPORT_JSON), "w") as handle:
            json.dump(self.to_dict(), handle, indent=2)
        with open(os.path.join(output_dir, REPORT_MARKDOWN), "w") as handle:
            handle.write(self.to_markdown())


@dataclass
class NewTaskResult:
    model: MultiTaskModel
    trainer: MultiTaskTrainer
    report: NewTaskReport
    freeze_report: FreezeReport


def learn_new_task(
    model: MultiTaskModel | str,
    task: TaskSpec | dict[str, Any],
    train_dataset: Mapping[str, Dataset],
    args: MultiTaskTrainingArguments,
    processing_class,
    eval_dataset: Mapping[str, Dataset] | None = None,
    freeze: str | list[str] | None = "none",
    rehearsal: float = 0.0,
    old_task_weighting: str = "proportional",
    **trainer_kwargs,
) -> NewTaskResult:
    r"""
    Add `task` to a trained multi-task model and fine-tune it, keeping the old tasks in the mix at `rehearsal`.

    Args:
        model ([`MultiTaskModel`] or `str`): the trained model, or the directory of its checkpoint.
        task ([`TaskSpec`] or `dict`): the new task (its name must not be a task of the model yet).
        train_dataset (`dict[str, Dataset]`): training data of the new task and, for rehearsal, of old tasks (raw
            or tokenised, as for [`MultiTaskTrainer`]). Old tasks without data are never drawn.
        args ([`MultiTaskTrainingArguments`]): training arguments; `sampling` is set to `"rehearsal"` here.
        processing_class: the tokenizer.
        eval_dataset (`dict[str, Dataset]`, *optional*): evaluation data; every task in it is evaluated before and
            after training, which is how the report shows forgetting. Give the old tasks' validation splits.
        freeze (`str` or `list[str]`, defaults to `"none"`): freeze rules (see [`apply_freeze`]); the new task's
            head (and adapter) is the target the rules keep trainable.
        rehearsal (`float`, defaults to 0.0): share of the draws spent on old tasks (see [`RehearsalSampler`]).
        old_task_weighting (`str`, defaults to `"proportional"`): how the rehearsal share is split among old tasks.
        trainer_kwargs: further [`MultiTaskTrainer`] arguments (`callbacks`, `compute_metrics`, ...).

    Returns:
        [`NewTaskResult`]: the trained `model`, the `trainer`, the before/after [`NewTaskReport`] and the
        [`FreezeReport`].
    """
    if isinstance(model, (str, os.PathLike)):
        model = MultiTaskModel.from_pretrained(model)
    spec = TaskSpec.from_any(task)
    old_tasks = list(model.config.task_names)
    if spec.name in old_tasks:
        raise TaskError(
            f"Task {spec.name!r} is already a task of this model ({', '.join(old_tasks)}). Give the new task another "
            f"name, or remove the old one first with `model.remove_task({spec.name!r})`."
        )
    train_dataset = dict(train_dataset)
    if spec.name not in train_dataset:
        raise TaskError(f"No training data for the new task {spec.name!r}: `train_dataset` has {sorted(train_dataset)}.")
    unknown = sorted(set(train_dataset) - set(old_tasks) - {spec.name})
    unknown += sorted(set(eval_dataset or {}) - set(old_tasks) - {spec.name})
    if unknown:
        raise TaskError(
            f"Data for unknown task(s) {sorted(set(unknown))}: the model's tasks are {', '.join(old_tasks)} and the new "
            f"task is {spec.name!r}."
        )
    main_metric(spec)
    rehearsed = [name for name in old_tasks if name in train_dataset]
    if rehearsal > 0 and not rehearsed:
        raise TaskError(
            f"rehearsal={rehearsal} needs training data of at least one old task ({', '.join(old_tasks)}) in "
            "`train_dataset`; add it, or set rehearsal=0."
        )

    set_seed(args.seed)  # the new head's initialisation is part of the run
    model.add_task(spec)
    freeze_report = apply_freeze(model, freeze, tasks=[spec.name])
    logger.info(freeze_report.summary())

    names = model.config.task_names
    for name in old_tasks:  # the trainer wants data for every task; tasks that are never drawn get one dummy row
        train_dataset.setdefault(name, _never_drawn(processing_class))
    if args.sampling not in ("proportional", "rehearsal"):
        logger.warning(f"learn_new_task draws tasks with sampling='rehearsal'; sampling={args.sampling!r} is replaced.")
    args.sampling = "rehearsal"
    args.sampling_kwargs = {
        "ratio": float(rehearsal),
        "new_tasks": [names.index(spec.name)],
        "rehearse_tasks": [names.index(name) for name in rehearsed] if rehearsal > 0 else [],
        "old_task_weighting": old_task_weighting,
    }
    trainer = MultiTaskTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processing_class,
        **trainer_kwargs,
    )
    evaluated = [name for name in names if name in (eval_dataset or {})]
    report = NewTaskReport(
        new_task=spec.name,
        freeze=freeze_report.to_dict(),
        rehearsal_ratio=float(rehearsal),
        rehearsed_tasks=rehearsed if rehearsal > 0 else [],
        main_metrics={name: main_metric(trainer.task_specs[name]) for name in evaluated},
    )
    if evaluated:
        trainer.evaluate(metric_key_prefix="before")
        report.before = {name: dict(trainer.last_eval_metrics[name]) for name in evaluated}
    trainer.train()
    if evaluated:
        trainer.evaluate()
        report.after = {name: dict(trainer.last_eval_metrics[name]) for name in evaluated}
    return NewTaskResult(model=model, trainer=trainer, report=report, freeze_report=freeze_report)


def _never_drawn(tokenizer) -> Dataset:
    """A one-row tokenised stand-in for an old task the sampler never draws (probability 0)."""
    encoded = tokenizer("")
    return Dataset.from_dict({key: [value] for key, value in encoded.items()} | {"labels": [-100]})
