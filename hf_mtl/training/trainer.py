"""`MultiTaskTrainer`: `transformers.Trainer` for a `MultiTaskModel` and a dict of per-task datasets.

It overrides only documented Trainer hooks and delegates each: the train dataloader draws batches from a task
sampler (`sampling/`), `compute_loss` hands per-task losses to the weighting strategy (`weighting/`),
`training_step` computes per-task gradients only for strategies that need them (`task_gradients.py`), `evaluate`
runs one pass per task and reports `eval_<task>_<metric>`, `log` adds per-task losses and weights, and checkpoints
carry the strategy state so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist
from datasets import Dataset
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, PredictionOutput, rotate_checkpoints
from transformers.utils import logging

from ..data import MultiTaskCollator, MultiTaskDataset
from ..data.joint import merge_stream, training_streams
from ..errors import TaskError
from ..evaluation import main_metric
from ..heads.discriminator import ganin_coefficient
from ..modeling_multitask import MultiTaskModel
from ..sampling import MultiTaskBatchSampler, build_task_sampler
from ..sampling.fixed import in_task_order
from ..utils.input_checks import check_tokenizer_fits_model
from ..weighting import build_weighting
from .arguments import MultiTaskTrainingArguments
from .callbacks.affinity import TaskAffinityCallback
from .callbacks.sharing import SharingCallback
from .callbacks.strategies import MultiTaskCallback
from .checkpointing import (
    clear_checkpoint_marker,
    load_multitask_state_file,
    mark_checkpoint_complete,
    resolve_resume_checkpoint,
    verify_checkpoint,
    verify_checkpoint_tasks,
)
from .evaluation import evaluate_tasks, predict_tasks
from .loss_options import set_label_smoothing, task_loss_scales
from .loss_tracking import TaskLossTracker
from .non_finite import NonFiniteLossError, non_finite_message, split_finite
from .parameter_groups import add_head_parameter_groups, add_sharing_parameter_groups
from .task_data import prepare_task_splits
from .task_gradients import TaskGradientAccumulator


logger = logging.get_logger(__name__)


TRAINER_STATE_FILE = "hf_mtl_trainer_state.safetensors"
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
        if not isinstance(args, MultiTaskTrainingArguments):
            raise TypeError(
                f"MultiTaskTrainer needs MultiTaskTrainingArguments, got {type(args).__name__}. "
                "Build them with `MultiTaskTrainingArguments(output_dir=..., ...)` (every TrainingArguments field works)."
            )
        if not isinstance(model, MultiTaskModel):
            raise TypeError(f"MultiTaskTrainer trains a hf_mtl.MultiTaskModel, got {type(model).__name__}.")
        self.task_names = model.config.task_names
        self.task_specs = {spec.name: spec for spec in model.config.task_specs}
        for spec in self.task_specs.values():
            main_metric(spec)  # a wrong metric for the task type fails now, not after training
        if compute_metrics is not None and not isinstance(compute_metrics, Mapping):
            raise TypeError("`compute_metrics` is a dict {task_name: function or evaluate module}.")
        unknown = sorted(set(compute_metrics or {}) - set(self.task_names))
        if unknown:
            raise TaskError(f"compute_metrics names unknown task(s) {unknown}; the model's tasks: {self.task_names}.")
        self.extra_metrics = dict(compute_metrics or {})

        self.weighting = build_weighting(args.weighting, self.task_names, **args.weighting_kwargs)
        self.task_gradients = TaskGradientAccumulator()  # gradient strategies: per-task gradients of a step
        self.loss_scales = task_loss_scales(model.config.task_specs, args.loss_scaling)
        self._check_compatibility(model, args)
        set_label_smoothing(model, args.label_smoothing_factor)
        self.max_seq_length = check_tokenizer_fits_model(processing_class, model, args.max_seq_length)
        self.task_train_datasets = self._prepare_split(train_dataset, "train", processing_class, args, require_all=True)
        self.task_eval_datasets = self._prepare_split(eval_dataset, "eval", processing_class, args, require_all=False)
        # Streams of training rows: a task alone, or the tasks of an input group reading the same rows (hf_mtl.data.joint).
        self.train_streams = training_streams(model.config.task_specs)
        if self.task_train_datasets:
            stream_data = {s[0]: merge_stream(self.task_train_datasets, s, self.task_specs) for s in self.train_streams}
            sizes = [len(stream_data[stream[0]]) for stream in self.train_streams]
            stream_names = ["+".join(stream) for stream in self.train_streams]
            sampler_kwargs = dict(args.sampling_kwargs)
            if args.sampling == "fixed" and "probabilities" in sampler_kwargs:  # {task: p} or a list in task order
                sampler_kwargs["probabilities"] = in_task_order(sampler_kwargs["probabilities"], stream_names)
            self.task_sampler = build_task_sampler(args.sampling, sizes, **sampler_kwargs)
            self.task_sampler.task_names = stream_names
            if len(self.train_streams) < len(self.task_names) and self.task_sampler.learns:
                raise ValueError(f"sampling={args.sampling!r} learns per task, and tasks that share an input_group are "
                                 "drawn together: use a fixed sampler (proportional, uniform, temperature, annealed).")
            if self.task_sampler.requires_evaluation:
                uncovered = [name for name in self.task_names if name not in self.task_eval_datasets]
                if args.eval_strategy == "no" or uncovered:
                    raise ValueError(
                        f"sampling={args.sampling!r} learns from evaluation losses: set eval_strategy ('steps' or "
                        "'epoch') and give every task eval data"
                        + (f" (missing for {uncovered})" if uncovered else "")
                        + ", or use sampling_kwargs={'signal': 'train_loss'}."
                    )
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
            train_dataset=MultiTaskDataset(
                stream_data, [s[0] for s in self.train_streams], [self.task_names.index(s[0]) for s in self.train_streams]
            ) if self.task_train_datasets else None,
            eval_dataset=self.task_eval_datasets or None,
            processing_class=processing_class,
            compute_metrics=None,
            **kwargs,
        )
        self.add_callback(MultiTaskCallback(self))
        self.add_callback(SharingCallback(self))
        if args.task_affinity_steps > 0:
            self.add_callback(TaskAffinityCallback(self))

    # ------------------------------------------------------------------ validation

    def _check_compatibility(self, model: MultiTaskModel, args: MultiTaskTrainingArguments) -> None:
        strategy = type(self.weighting)
        if strategy.needs_all_tasks_per_step and args.batching == "per_task" and len(self.task_names) > 1:
            raise ValueError(
                f"Weighting {args.weighting!r} combines the tasks of each step, but batching='per_task' trains one "
                "task per step. Set batching='mixed'."
            )
        if strategy.requires_task_gradients and not model.shared_parameters():
            raise ValueError(
                f"Weighting {args.weighting!r} combines per-task gradients of the shared parameters, but this model "
                f"shares no trainable parameter (sharing={model.config.sharing!r}, e.g. LoRA with a frozen backbone): "
                "each trainable parameter belongs to one task, so there is nothing to combine. Use a loss weighting "
                "(static, uncertainty, dwa, famo) or train the backbone (sharing_kwargs={'freeze_backbone': False})."
            )
        if args.batching == "mixed":
            unmixable = [spec.name for spec in model.config.task_specs if spec.type == "multiple_choice"]
            if unmixable:
                raise ValueError(f"Multiple-choice task(s) {unmixable} cannot share mixed batches; use batching='per_task'.")
        if args.adversarial_weight > 0 and model.discriminator is None:
            raise ValueError(
                "adversarial_weight > 0 needs a task discriminator: build the model with `adversarial=True` "
                "(e.g. `MultiTaskModel.from_backbone(path, tasks, config_kwargs={'adversarial': True})`)."
            )
        if args.orthogonality_weight > 0 and getattr(model.config, "sharing", "hard") != "shared_private":
            raise ValueError("orthogonality_weight > 0 needs a shared-private model (config `sharing='shared_private'`).")

    def _prepare_split(self, datasets, split, tokenizer, args, require_all) -> dict[str, Dataset]:
        return prepare_task_splits(self, datasets, split, tokenizer, args, require_all)

    # ------------------------------------------------------------------ data

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("MultiTaskTrainer: training requires `train_dataset` (a dict of per-task datasets).")
        args = self.args
        sampler = MultiTaskBatchSampler(
            self.train_dataset.sizes,
            self.task_sampler,
            batch_size=self._train_batch_size,
            batching=args.batching,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            num_replicas=args.world_size,
            rank=args.process_index,
            seed=args.data_seed if args.data_seed is not None else args.seed,
        )
        if args.max_steps > 0:
            sampler.num_epochs = max(1, math.ceil(args.max_steps / sampler.steps_per_epoch))
        else:
            sampler.num_epochs = max(1, math.ceil(args.num_train_epochs))
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(),
            persistent_workers=args.dataloader_persistent_workers if args.dataloader_num_workers > 0 else False,
        )
        prepared = self.accelerator.prepare(loader)
        # The sampler is rank-aware (every process trains the same task at the same step): make accelerate's
        # `BatchSamplerShard` a pass-through instead of re-sharding its batches, as Trainer does for its own
        # rank-aware `BatchRebalanceSampler`.
        shard = getattr(prepared, "batch_sampler", None)
        if shard is not None and getattr(shard, "batch_sampler", None) is sampler:
            shard.num_processes, shard.process_index = 1, 0
        self.batch_sampler = sampler
        return prepared



    # ------------------------------------------------------------------ optimisation

    def create_optimizer(self, model=None):
        created = self.optimizer is None  # an optimizer passed in by the user keeps its groups as they are
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        if created:
            add_sharing_parameter_groups(optimizer, self.model, self.args.learning_rate)
            add_head_parameter_groups(optimizer, self.model, self.args.head_lr_multiplier)
        parameters = [p for p in self.weighting.parameters() if p.requires_grad]
        if parameters and not any(group.get("hf_mtl_weighting") for group in optimizer.param_groups):
            lr = self.args.weighting_lr or self.weighting.default_lr or self.args.learning_rate
            optimizer.add_param_group({"params": parameters, "lr": lr, "weight_decay": 0.0, "hf_mtl_weighting": True})
        return optimizer


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
        auxiliary = self._auxiliary_loss(auxiliary_losses)
        if auxiliary is not None:
            loss = loss + auxiliary
        self.loss_tracker.add({n: l.detach() for n, l in task_losses.items()}, auxiliary_losses)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        if not self.weighting.requires_task_gradients:
            loss = super().training_step(model, inputs, num_items_in_batch)
            self._sync_weighting_gradients()
            return loss
        model.train()
        inputs = self._prepare_inputs(inputs)
        sync_off = self.accelerator.no_sync(model) if self.args.world_size > 1 else contextlib.nullcontext()
        with sync_off, self.compute_loss_context_manager():
            outputs = model(**inputs)
        task_losses, auxiliary_losses = self._finite_losses(outputs)
        unwrapped = self.accelerator.unwrap_model(model)
        shared = [p for _, p in unwrapped.shared_parameters()]
        shared_ids = {id(p) for p in shared}
        specific = [p for p in unwrapped.parameters() if p.requires_grad and id(p) not in shared_ids]
        loss_scale = 1.0  # fp16: gradients stay scaled, the optimizer step unscales them
        if self.accelerator.scaler is not None:
            loss_scale = float(self.accelerator.scaler.get_scale())
        rows = {name: int(indices.numel()) for name, indices in outputs.task_indices.items()}
        losses = self.task_gradients.add(self._scaled(task_losses), self._auxiliary_loss(auxiliary_losses), shared, specific,
                                         rows, auxiliary_scale=1.0 / self.current_gradient_accumulation_steps)
        if self.accelerator.sync_gradients:  # the step's last micro-batch: combine the step's task gradients once
            self.task_gradients.apply(shared, specific, self.weighting, self.task_names, loss_scale)
        self.loss_tracker.add(losses, auxiliary_losses)
        weights = self.weighting.weights()
        total = sum(weights.get(name, 1.0) * value for name, value in losses.items())
        return torch.tensor(total / self.current_gradient_accumulation_steps, device=self.args.device)

    def _sync_weighting_gradients(self) -> None:
        """Learnable task weights live outside the DDP-wrapped model: average their gradients by hand."""
        if self.args.world_size <= 1 or not self.accelerator.sync_gradients or not dist.is_initialized():
            return
        for p in self.weighting.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()

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
        if self.args.should_save:
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            if self.args.hub_token is not None:
                safe_args = copy.copy(self.args)
                safe_args.hub_token = None
                torch.save(safe_args, os.path.join(output_dir, "training_args.bin"))
            self.write_model_card(output_dir)

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
        run_dir = self._get_output_dir(trial=trial)
        output_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.args.should_save:
            clear_checkpoint_marker(output_dir)  # re-saving into an existing folder: incomplete until the end
        # Pushed and rotating older checkpoints out happen once this one is complete: a crash never leaves no
        # complete checkpoint, and a pushed checkpoint carries the strategy state and the marker.
        limit, push = self.args.save_total_limit, self.args.push_to_hub
        self.args.save_total_limit, self.args.push_to_hub = None, False
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit, self.args.push_to_hub = limit, push
        if self.args.should_save and os.path.isdir(output_dir):
            save_file(self.multitask_state_dict(), os.path.join(output_dir, TRAINER_STATE_FILE), self._state_metadata())
        self.accelerator.wait_for_everyone()  # every process's rng_state_<rank>.pth is written
        if self.args.should_save and os.path.isdir(output_dir):
            mark_checkpoint_complete(output_dir, self.state.global_step)
        if push:
            self._push_from_checkpoint(output_dir)
        if self.args.should_save:
            rotate_checkpoints(run_dir, limit, self.state.best_model_checkpoint, use_mtime=True)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        verify_checkpoint(resume_from_checkpoint)
        verify_checkpoint_tasks(resume_from_checkpoint, self.model.config)
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, TRAINER_STATE_FILE)
        if os.path.isfile(path):
            self.load_multitask_state_dict(load_multitask_state_file(path, self._state_metadata()))
        elif len(self.weighting.state_dict()):
            raise FileNotFoundError(
                f"{resume_from_checkpoint} has no {TRAINER_STATE_FILE}: the {self.args.weighting!r} weighting state "
                "cannot be restored, so the resumed run would not continue exactly. Resume from a checkpoint written "
                "by MultiTaskTrainer."
            )

    def _state_metadata(self) -> dict[str, str]:
        """What the saved strategy state belongs to: a resume with another weighting or task list fails clearly."""
        return {"weighting": self.args.weighting, "task_names": ",".join(self.task_names)}

    def multitask_state_dict(self) -> dict[str, torch.Tensor]:
        """Weighting and sampler state (tensors only, saved with safetensors in every checkpoint)."""
        state = {f"weighting.{k}": v.detach().cpu().contiguous() for k, v in self.weighting.state_dict().items()}
        sampler = getattr(self, "task_sampler", None)
        if sampler is not None:
            state.update({f"sampler.{k}": v.detach().cpu().contiguous() for k, v in sampler.state_dict().items()})
        return state

    def load_multitask_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        weighting = {k[len("weighting.") :]: v for k, v in state.items() if k.startswith("weighting.")}
        sampler = {k[len("sampler.") :]: v for k, v in state.items() if k.startswith("sampler.")}
        self.weighting.load_state_dict(weighting)
        if getattr(self, "task_sampler", None) is not None:
            self.task_sampler.load_state_dict(sampler)
