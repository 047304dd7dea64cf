"""`MultiTaskTrainer`: `transformers.Trainer` for a `MultiTaskModel` and a dict of per-task datasets.

It overrides only documented Trainer hooks and delegates each: settings that cannot work together are refused when
it is built (`compatibility.py`), the train dataloader draws batches from a task sampler (`train_batches.py`,
`sampling/`), `compute_loss` hands per-task losses to the weighting strategy (`weighting/`), `training_step` computes
per-task gradients only for strategies that need them (`gradient_step.py`, `task_gradients.py`), `evaluate` runs one
pass per task and reports `eval_<task>_<metric>`, `log` adds per-task losses and weights, and checkpoints carry the
strategy state so a resumed run continues exactly (`checkpointing.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_utils import PredictionOutput
from transformers.utils import logging

from ..data import MultiTaskCollator
from ..data.joint import training_streams
from ..heads.discriminator import ganin_coefficient
from ..modeling_multitask import MultiTaskModel
from ..sampling import MultiTaskBatchSampler
from ..utils.input_checks import check_tokenizer_fits_model
from ..weighting import build_weighting
from .arguments import MultiTaskTrainingArguments
from .callbacks.affinity import TaskAffinityCallback
from .callbacks.sharing import SharingCallback
from .callbacks.strategies import MultiTaskCallback
from .checkpointing import (
    TRAINER_STATE_FILE,
    load_checkpoint,
    load_strategy_state_dict,
    resolve_resume_checkpoint,
    save_beside_weights,
    save_complete_checkpoint,
    strategy_state_dict,
)
from .compatibility import check_compatibility, check_launcher, check_task_sampler, check_trainer_inputs
from .evaluation import evaluate_tasks, predict_tasks
from .gradient_step import sync_weighting_gradients, task_gradient_step
from .loss_options import set_label_smoothing, task_loss_scales
from .loss_tracking import TaskLossTracker
from .non_finite import NonFiniteLossError, non_finite_message, split_finite
from .parameter_groups import add_head_parameter_groups, add_sharing_parameter_groups
from .sharding import (
    configure_fsdp,
    load_weighting_optimizer_state,
    save_weighting_optimizer_state,
    unused_head_term,
    weighting_group,
    without_weighting_group,
)
from .step_reevaluation import StepReevaluation
from .task_data import prepare_task_splits
from .task_gradients import TaskGradientAccumulator
from .train_batches import build_train_data, train_dataloader


logger = logging.get_logger(__name__)

__all__ = ["MultiTaskTrainer", "NonFiniteLossError", "TRAINER_STATE_FILE"]


class MultiTaskTrainer(Trainer):
    r"""
    Trains a [`MultiTaskModel`] on several tasks at once.

    Args:
        model ([`MultiTaskModel`]): the model; its config's task list is the source of truth.
        args ([`MultiTaskTrainingArguments`]): training arguments (sampling, batching, weighting, ...).
        train_dataset (`dict[str, datasets.Dataset]`): one training split per task of the model. Raw splits
            (text + label columns, see [`TaskSpec`]) are validated and tokenised with `processing_class`; splits that
            already have `input_ids` are used as they are.
        eval_dataset (`dict[str, datasets.Dataset]`, *optional*): evaluation splits for some or all tasks.
        processing_class: the tokenizer (needed to tokenise raw data and to pad batches).
        compute_metrics (`dict[str, Callable]`, *optional*): extra metrics per task: a function of an
            `EvalPrediction` returning a dict, or an `evaluate` module (called with `predictions`/`references`).
            Built-in metrics of each task type are always computed (scikit-learn / seqeval, offline).
        Other arguments are those of `Trainer`.
    """

    def __init__(
        self,
        model: MultiTaskModel | None = None,
        args: MultiTaskTrainingArguments | None = None,
        data_collator=None,
        train_dataset: Mapping[str, Dataset] | None = None,
        eval_dataset: Mapping[str, Dataset] | None = None,
        processing_class=None,
        compute_metrics: Mapping[str, Callable] | None = None,
        **kwargs,
    ):
        args = args if args is not None else MultiTaskTrainingArguments(output_dir="trainer_output")
        check_trainer_inputs(model, args, compute_metrics)
        self.task_names = model.config.task_names
        self.task_specs = {spec.name: spec for spec in model.config.task_specs}
        self.extra_metrics = dict(compute_metrics or {})

        self.weighting = build_weighting(args.weighting, self.task_names, **args.weighting_kwargs)
        self.step_reevaluation = StepReevaluation(self.task_names) if self.weighting.reevaluates_step else None
        self.task_gradients = TaskGradientAccumulator()  # gradient strategies: per-task gradients of a step
        self.step_grad_norm = None  # Trainer's gradient norm of the current optimizer step (see `_get_grad_norm`)
        self.loss_scales = task_loss_scales(model.config.task_specs, args.loss_scaling)
        self._check_compatibility(model, args)
        set_label_smoothing(model, args.label_smoothing_factor)
        self.max_seq_length = check_tokenizer_fits_model(processing_class, model, args.max_seq_length)
        self.task_train_datasets = self._prepare_split(train_dataset, "train", processing_class, args, require_all=True)
        self.task_eval_datasets = self._prepare_split(eval_dataset, "eval", processing_class, args, require_all=False)
        # Streams of training rows: a task alone, or the tasks of an input group reading the same rows (hf_mtl.data.joint).
        self.train_streams = training_streams(model.config.task_specs)
        train_data = None  # `task_sampler` (the stream each step trains) exists only with training data
        if self.task_train_datasets:
            train_data, self.task_sampler = build_train_data(
                self.task_train_datasets, self.train_streams, self.task_specs, self.task_names, args
            )
            check_task_sampler(self.task_sampler, args, self.task_names, self.train_streams, self.task_eval_datasets)
        if data_collator is None:
            if processing_class is None:
                raise ValueError("Pass `processing_class` (the tokenizer): batches are padded with it.")
            data_collator = MultiTaskCollator(processing_class, list(self.task_specs.values()))
        # The sharing scheme's own auxiliary losses (e.g. AdaShare's regularisers) are logged as `loss_<name>` too.
        self.loss_tracker = TaskLossTracker(
            self.task_names, ("adversarial", "orthogonality", *model.sharing.auxiliary_loss_weights())
        )
        self.last_eval_metrics: dict[str, dict[str, float]] = {}
        # Extra `build_model_card` arguments (datasets, recipe, transfer_table) for the card written on every save.
        self.model_card_kwargs: dict[str, Any] = {}
        self.batch_sampler: MultiTaskBatchSampler | None = None
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_data,
            eval_dataset=self.task_eval_datasets or None,
            processing_class=processing_class,
            compute_metrics=None,
            **kwargs,
        )
        # Learnable task weights sit beside the model, on its device: NCCL reduces only device tensors.
        self.weighting.to(self.args.device)
        self.add_callback(MultiTaskCallback(self))
        self.add_callback(SharingCallback())
        if args.task_affinity_steps > 0:
            self.add_callback(TaskAffinityCallback(self))

    # ------------------------------------------------------------------ validation

    def _check_compatibility(self, model: MultiTaskModel, args: MultiTaskTrainingArguments) -> None:
        check_compatibility(model, args, self.weighting, self.task_names)
        check_launcher(args, self.weighting)

    def create_accelerator_and_postprocess(self) -> None:
        # Trainer's Accelerator, then FSDP on CPU processes and the classes FSDP wraps (`sharding.py`).
        super().create_accelerator_and_postprocess()
        configure_fsdp(self)

    def _prepare_split(self, datasets, split, tokenizer, args, require_all) -> dict[str, Dataset]:
        return prepare_task_splits(self, datasets, split, tokenizer, args, require_all)

    # ------------------------------------------------------------------ data

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("MultiTaskTrainer: training requires `train_dataset` (a dict of per-task datasets).")
        prepared, self.batch_sampler = train_dataloader(self)
        return prepared

    # ------------------------------------------------------------------ optimisation

    def create_optimizer(self, model=None):
        created = self.optimizer is None  # an optimizer passed in by the user keeps its groups as they are
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        if created:
            add_sharing_parameter_groups(optimizer, self.model, self.args.learning_rate)
            add_head_parameter_groups(optimizer, self.model, self.args.head_lr_multiplier)
        if not self.is_fsdp_enabled:  # under FSDP2, accelerate maps every optimizer parameter to a model parameter
            self._add_weighting_parameter_group(optimizer)
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        # Built once the optimizer is final (after accelerate's FSDP preparation): the task weights join it here at
        # the latest, so the schedule covers them.
        self._add_weighting_parameter_group(optimizer or self.optimizer)
        return super().create_scheduler(num_training_steps, optimizer)

    def _add_weighting_parameter_group(self, optimizer) -> None:
        """The weighting's learnable parameters (e.g. uncertainty's log-variances) as one group, without decay."""
        parameters = [p for p in self.weighting.parameters() if p.requires_grad]
        if parameters and weighting_group(optimizer)[1] is None:
            lr = self.args.weighting_lr or self.weighting.default_lr or self.args.learning_rate
            optimizer.add_param_group({"params": parameters, "lr": lr, "weight_decay": 0.0, "hf_mtl_weighting": True})

    def _scaled(self, task_losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Task losses with `loss_scaling` applied (what the weighting combines; the logs keep the raw losses)."""
        if not self.loss_scales:
            return task_losses
        return {name: loss * self.loss_scales.get(name, 1.0) for name, loss in task_losses.items()}

    def _auxiliary_loss(self, auxiliary_losses: dict[str, torch.Tensor]) -> torch.Tensor | None:
        terms = []
        for name, weight in self.model.sharing.auxiliary_loss_weights().items():
            if name in auxiliary_losses and weight > 0:
                terms.append(weight * auxiliary_losses[name])
        if "adversarial" in auxiliary_losses and self.args.adversarial_weight > 0:
            terms.append(self.args.adversarial_weight * auxiliary_losses["adversarial"])
        if "orthogonality" in auxiliary_losses and self.args.orthogonality_weight > 0:
            terms.append(self.args.orthogonality_weight * auxiliary_losses["orthogonality"])
        return sum(terms) if terms else None

    def _finite_losses(self, outputs) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The micro-batch's task and auxiliary losses without the non-finite ones (see `non_finite.py`): those stop
        training (`non_finite_loss="error"`) or mark the optimizer step to be skipped on every process."""
        tasks, auxiliary, bad = split_finite(dict(outputs.task_losses or {}), dict(outputs.auxiliary_losses or {}))
        if bad:
            self.loss_tracker.non_finite_tasks.update(bad)
            # Several processes: the callback raises on all of them before the optimizer step, so none hangs.
            if self.args.non_finite_loss == "error" and self.args.world_size <= 1:
                raise NonFiniteLossError(non_finite_message(bad, self.state.global_step))
        return tasks, auxiliary

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if not model.training or outputs.task_losses is None:
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        task_losses, auxiliary_losses = self._finite_losses(outputs)
        if task_losses:
            if self.weighting.needs_representation:
                loss = self.weighting.combine(self._scaled(task_losses), representation=outputs.head_inputs)
            else:
                loss = self.weighting.combine(self._scaled(task_losses))
        else:  # every task of the micro-batch is non-finite: contribute nothing (the step is skipped anyway)
            loss = sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
            if self.weighting.needs_representation:
                self.weighting.skip_micro_batch(self.args.device)  # still enters the collective the other processes enter
        auxiliary = self._auxiliary_loss(auxiliary_losses)
        if auxiliary is not None:
            loss = loss + auxiliary
        if self.is_fsdp_enabled and self.args.batching == "mixed":  # every process reduce-scatters the same heads
            unused = unused_head_term(model, task_losses)
            loss = loss if unused is None else loss + unused
        self.loss_tracker.add({n: l.detach() for n, l in task_losses.items()}, auxiliary_losses)
        if self.step_reevaluation is not None:
            self.step_reevaluation.keep(inputs)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        if not self.weighting.requires_task_gradients:
            loss = super().training_step(model, inputs, num_items_in_batch)
            self._sync_weighting_gradients()
            return loss
        return task_gradient_step(self, model, inputs)  # gradient strategies: one backward per task

    def _get_grad_norm(self, model, grad_norm=None):
        # Trainer's norm of the model's gradients (taken for clipping and logging), kept for this step's non-finite
        # check (`MultiTaskCallback.on_pre_optimizer_step`), which then takes no second norm over every gradient.
        self.step_grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        return self.step_grad_norm

    def _sync_weighting_gradients(self) -> None:
        """Learnable task weights live outside the DDP-wrapped model: average their gradients by hand."""
        sync_weighting_gradients(self.weighting, self.args, self.accelerator)

    def gradient_reversal_coefficient(self) -> float:
        if self.args.adversarial_schedule == "constant":
            return 1.0
        return ganin_coefficient(self.state.global_step / max(self.state.max_steps, 1))

    # ------------------------------------------------------------------ logging and evaluation

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and not any(key.startswith("eval_") for key in logs):  # a training log, on every process
            logs.update(self.loss_tracker.pop_window(self.args.device))
            logs.update({f"weight_{name}": value for name, value in self.weighting.weights().items()})
            if self.batch_sampler is not None:
                probabilities = self.task_sampler.probabilities(self.batch_sampler.epoch, self.batch_sampler.num_epochs)
                logs.update({f"sampling_prob_{n}": float(p) for n, p in zip(self.task_sampler.task_names, probabilities)})
            if self.model.discriminator is not None and self.args.adversarial_weight > 0:
                logs["adversarial_coefficient"] = self.model.discriminator.coefficient
            if self.loss_tracker.skipped_steps:
                logs["skipped_steps"] = self.loss_tracker.skipped_steps
            logs.update(self.model.sharing.training_logs())  # e.g. MMoE gate weights, AdaShare policy
        super().log(logs, start_time)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """One evaluation pass per task: `{prefix}_<task>_<metric>` for every metric of the task's type,
        `{prefix}_<task>_loss`, and `{prefix}_average` (mean of the tasks' main metrics) and `{prefix}_loss`."""
        return evaluate_tasks(self, eval_dataset, ignore_keys, metric_key_prefix)

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test") -> dict[str, PredictionOutput]:
        """`Trainer.predict` per task: `{task: PredictionOutput}` with that head's raw logits (`predictions`), and
        its `label_ids` and metrics (`{prefix}_<task>_<metric>`) where the data has labels. `test_dataset` is
        `{task: Dataset or DatasetDict}` (a DatasetDict gives its `test` split); rows need no labels.
        Use `hf_mtl.MultiTaskPredictor` for decoded labels and entity spans."""
        return predict_tasks(self, test_dataset, ignore_keys, metric_key_prefix)

    # ------------------------------------------------------------------ checkpoints and model cards

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        # `_save` is where Trainer writes weights, config and tokenizer, for `save_model` and for every checkpoint
        # alike, on the process that saves: the hf_mtl card goes beside them here (`save_model` itself stays
        # Trainer's, so its FSDP/DeepSpeed branches and push logic are untouched; an `on_save` callback would miss
        # `save_model`). Trainer also pickles the arguments there: re-save them without the Hub token, since the
        # folder may be pushed.
        super()._save(output_dir, state_dict)
        save_beside_weights(self, output_dir)

    def create_model_card(self, model_name: str | None = None, license: str | None = None, language=None,
                          tags=None, **kwargs) -> None:
        """Called by `Trainer.push_to_hub`: writes the hf_mtl card (tasks, labels, per-task results, recipe, transfer
        table) instead of Transformers' generic one, with `license`, `language` and `tags` in its metadata (they are
        also kept in `model_card_kwargs`, so later saves keep them). Other Trainer card arguments do not apply."""
        metadata = {"license": license, "language": language, "tags": [tags] if isinstance(tags, str) else tags}
        self.model_card_kwargs.update({key: value for key, value in metadata.items() if value is not None})
        if self.is_world_process_zero():
            self.write_model_card(self.args.output_dir, model_id=getattr(self, "hub_model_id", None))

    def write_model_card(self, output_dir: str, model_id: str | None = None) -> str:
        """Write the hf_mtl `README.md` of the model into `output_dir` (see `model_card.save_trainer_model_card`)."""
        from ..hub.model_card import save_trainer_model_card

        return save_trainer_model_card(self, output_dir, model_id=model_id)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """`Trainer.train`; `resume_from_checkpoint=True` resumes from the newest *complete* checkpoint of
        `output_dir` (see `hf_mtl.training.checkpointing`), never from one a crash interrupted while it was being written."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = resolve_resume_checkpoint(self.args.output_dir)
            logger.info(f"Resuming from {resume_from_checkpoint}, the newest complete checkpoint.")
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        if self.args.refine_steps > 0:  # the second stage of two-stage training (hf_mtl.training.refinement)
            from .refinement import refine_heads

            refined = refine_heads(self, self.args.refine_steps)
            output.metrics.update(refined)
            self.log(dict(refined))
        return output

    def _save_checkpoint(self, model, trial) -> None:
        # Trainer's files, then the strategy state and the completion marker (see `checkpointing.py`).
        save_complete_checkpoint(self, trial, functools.partial(super()._save_checkpoint, model, trial))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        # Only a complete checkpoint of the same tasks; then Trainer's load, then the strategy state.
        load_checkpoint(self, resume_from_checkpoint, functools.partial(super()._load_from_checkpoint,
                                                                         resume_from_checkpoint, model))

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self.is_fsdp_enabled:
            return super()._save_optimizer_and_scheduler(output_dir)
        # FSDP's optimizer checkpoint covers model parameters only: the task weights' state goes in a file of its own.
        with without_weighting_group(self.optimizer) as weighting_state:
            super()._save_optimizer_and_scheduler(output_dir)
        if weighting_state is not None and self.args.should_save:
            save_weighting_optimizer_state(weighting_state, output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if not self.is_fsdp_enabled or checkpoint is None:
            return super()._load_optimizer_and_scheduler(checkpoint)
        with without_weighting_group(self.optimizer):
            super()._load_optimizer_and_scheduler(checkpoint)
        load_weighting_optimizer_state(self.optimizer, checkpoint)

    def _state_metadata(self) -> dict[str, str]:
        """What the saved strategy state belongs to: a resume with another weighting or task list fails clearly."""
        return {"weighting": self.args.weighting, "task_names": ",".join(self.task_names)}

    def multitask_state_dict(self) -> dict[str, torch.Tensor]:
        """Weighting and sampler state (tensors only, saved with safetensors in every checkpoint)."""
        return strategy_state_dict(self.weighting, getattr(self, "task_sampler", None))

    def load_multitask_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        load_strategy_state_dict(state, self.weighting, getattr(self, "task_sampler", None))
