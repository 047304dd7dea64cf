"""Settings that cannot work together, refused when `MultiTaskTrainer` is built rather than after training started.

A weighting strategy, a batching mode, a sampler, the model's sharing scheme and the auxiliary losses each make sense
alone; some combinations do not (a strategy that combines the tasks of a step with one task per step, a gradient
strategy on a model that shares no parameter, a sampler that learns from evaluation losses without evaluation...).
Each check here raises with what to change.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import TaskError
from ..evaluation import main_metric
from ..modeling_multitask import MultiTaskModel
from .arguments import MultiTaskTrainingArguments


def check_trainer_inputs(model: Any, args: Any, compute_metrics: Any) -> None:
    """The trainer's arguments, model and `compute_metrics` are of the kinds it takes; every task's metric fits its
    type (a wrong metric fails now, not after training)."""
    if not isinstance(args, MultiTaskTrainingArguments):
        raise TypeError(
            f"MultiTaskTrainer needs MultiTaskTrainingArguments, got {type(args).__name__}. "
            "Build them with `MultiTaskTrainingArguments(output_dir=..., ...)` (every TrainingArguments field works)."
        )
    if not isinstance(model, MultiTaskModel):
        raise TypeError(f"MultiTaskTrainer trains a hf_mtl.MultiTaskModel, got {type(model).__name__}.")
    task_names = model.config.task_names
    for spec in model.config.task_specs:
        main_metric(spec)
    if compute_metrics is not None and not isinstance(compute_metrics, Mapping):
        raise TypeError("`compute_metrics` is a dict {task_name: function or evaluate module}.")
    unknown = sorted(set(compute_metrics or {}) - set(task_names))
    if unknown:
        raise TaskError(f"compute_metrics names unknown task(s) {unknown}; the model's tasks: {task_names}.")


def check_compatibility(model: MultiTaskModel, args: MultiTaskTrainingArguments, weighting,
                        task_names: list[str]) -> None:
    """The weighting strategy, batching mode, task types and auxiliary losses fit together and fit the model."""
    strategy = type(weighting)
    if strategy.needs_all_tasks_per_step and args.batching == "per_task" and len(task_names) > 1:
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
            raise ValueError(
                f"Multiple-choice task(s) {unmixable} cannot share mixed batches; use batching='per_task'."
            )
    if args.adversarial_weight > 0 and model.discriminator is None:
        raise ValueError(
            "adversarial_weight > 0 needs a task discriminator: build the model with `adversarial=True` "
            "(e.g. `MultiTaskModel.from_backbone(path, tasks, config_kwargs={'adversarial': True})`)."
        )
    if args.orthogonality_weight > 0 and getattr(model.config, "sharing", "hard") != "shared_private":
        raise ValueError("orthogonality_weight > 0 needs a shared-private model (config `sharing='shared_private'`).")


def sharded_training(args: MultiTaskTrainingArguments) -> str | None:
    """"fsdp" or "deepspeed" when the arguments or the accelerate launcher ask for sharded training, else None."""
    if args.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    if args.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "deepspeed"
    return None


def check_launcher(args: MultiTaskTrainingArguments, weighting) -> None:
    """Sharded training (FSDP, DeepSpeed ZeRO) with what cannot run under it, refused before any work.

    accelerate enables FSDP and DeepSpeed on GPUs (and other accelerators) only: on CPU processes it trains plain DDP
    instead, silently. Under sharding, the strategies that take per-task gradients (gradnorm, pcgrad, cagrad) or
    differentiate the heads apart (rep_norm), and task affinity, call autograd on parameters that are sharded and
    bypass `accelerator.backward`; they are refused, naming the loss weightings that work (one backward pass)."""
    sharding = sharded_training(args)
    if sharding is None:
        return
    if args.device.type == "cpu":
        raise ValueError(
            f"{sharding} was requested, but these processes run on the CPU, where accelerate does not shard: training "
            f"would run as plain DDP. On CPU, drop {sharding!r} (DDP: `torchrun --nproc_per_node N` or "
            "`accelerate launch --multi_gpu --num_processes N`); shard on GPUs."
        )
    if weighting.requires_task_gradients or weighting.needs_representation:
        raise ValueError(
            f"Weighting {args.weighting!r} takes per-task gradients (of the shared parameters, or through the heads), "
            f"which {sharding} shards and which bypass accelerator.backward. Under {sharding} use a loss weighting with "
            "one backward pass: static, uncertainty, dwa or famo; or train with DDP."
        )
    if args.task_affinity_steps > 0:
        raise ValueError(
            f"task_affinity_steps > 0 measures task affinity with per-task gradients, which {sharding} shards: set "
            "task_affinity_steps=0, or measure affinity in a DDP or single-process run."
        )


def check_task_sampler(sampler, args: MultiTaskTrainingArguments, task_names: list[str], train_streams: list,
                       eval_datasets: Mapping[str, Any]) -> None:
    """The task sampler can learn what it learns: per task (no input groups drawn together), and from evaluation
    losses only when every task is evaluated during training."""
    if len(train_streams) < len(task_names) and sampler.learns:
        raise ValueError(f"sampling={args.sampling!r} learns per task, and tasks that share an input_group are "
                         "drawn together: use a fixed sampler (proportional, uniform, temperature, annealed).")
    if sampler.requires_evaluation:
        uncovered = [name for name in task_names if name not in eval_datasets]
        if args.eval_strategy == "no" or uncovered:
            raise ValueError(
                f"sampling={args.sampling!r} learns from evaluation losses: set eval_strategy ('steps' or "
                "'epoch') and give every task eval data"
                + (f" (missing for {uncovered})" if uncovered else "")
                + ", or use sampling_kwargs={'signal': 'train_loss'}."
            )
