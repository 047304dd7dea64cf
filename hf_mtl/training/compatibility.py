"""Settings that cannot work together, refused when `MultiTaskTrainer` is built rather than after training started.

A weighting strategy, a batching mode, a sampler, the model's sharing scheme and the auxiliary losses each make sense
alone; some combinations do not (a strategy that combines the tasks of a step with one task per step, a gradient
strategy on a model that shares no parameter, a sampler that learns from evaluation losses without evaluation...).
Each check here raises with what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import TaskError
from ..evaluation import main_metric
from ..modeling_multitask import MultiTaskModel
from .arguments import MultiTaskTrainingArguments
from .sharding import fsdp_version, sharded_training


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


def check_launcher(args: MultiTaskTrainingArguments, weighting) -> None:
    """Sharded training (FSDP, DeepSpeed ZeRO) with what cannot run under it, refused before any work.

    FSDP2 runs on GPUs and, through `sharding.enable_fsdp_on_cpu`, on several CPU processes; DeepSpeed and FSDP1 need
    GPUs (on CPU processes accelerate would silently train plain DDP). Under sharding, the strategies that take
    per-task gradients (gradnorm, pcgrad, cagrad) or differentiate the heads apart (rep_norm), and task affinity,
    call autograd on parameters that are sharded and bypass `accelerator.backward`; they are refused, naming the loss
    weightings that work (one backward pass)."""
    sharding = sharded_training(args)
    if sharding is None:
        return
    if args.device.type == "cpu":
        ddp = "DDP: `torchrun --nproc_per_node N` or `accelerate launch --multi_gpu --num_processes N`"
        if sharding == "deepspeed":
            raise ValueError(
                "deepspeed was requested, but these processes run on the CPU, where accelerate does not run DeepSpeed: "
                f"training would run as plain DDP. On CPU, drop 'deepspeed' and use FSDP (fsdp='full_shard') or {ddp}."
            )
        if fsdp_version(args) != 2:
            raise ValueError(
                f"FSDP version {fsdp_version(args)} was requested on CPU processes, where hf_mtl shards with FSDP2 only: "
                "set fsdp_config={'version': 2} (or FSDP_VERSION=2 in the accelerate config)."
            )
        if args.world_size < 2:
            raise ValueError(
                "fsdp shards the model across processes, but this is one CPU process: launch several (`torchrun "
                "--nproc_per_node 2 ...` or `accelerate launch --multi_gpu --num_processes 2 ...`), or drop 'fsdp'."
            )
    if weighting.requires_task_gradients or weighting.needs_representation:
        usable = "static, uncertainty, dwa or famo" if sharding == "fsdp" else "static, dwa or famo"
        raise ValueError(
            f"Weighting {args.weighting!r} takes per-task gradients (of the shared parameters, or through the heads), "
            f"which {sharding} shards and which bypass accelerator.backward. Under {sharding} use a loss weighting with "
            f"one backward pass: {usable}; or train with DDP."
        )
    if sharding == "deepspeed" and any(p.requires_grad for p in weighting.parameters()):
        raise ValueError(
            f"Weighting {args.weighting!r} learns task weights with the trainer's optimizer, outside the model, "
            "which DeepSpeed's optimizer does not hold. Under deepspeed use static, dwa or famo; uncertainty runs "
            "under FSDP or DDP."
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
