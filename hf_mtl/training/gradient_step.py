"""What `MultiTaskTrainer.training_step` does beyond Trainer's own step, for each kind of weighting strategy.

Gradient strategies (GradNorm, PCGrad, CAGrad) replace Trainer's single backward with one backward per task
(`task_gradient_step`, on top of `task_gradients.TaskGradientAccumulator`). Loss strategies keep Trainer's step; under
several processes their learnable task weights, which live outside the DDP-wrapped model, get their gradients
averaged by hand (`sync_weighting_gradients`).
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist


def task_gradient_step(trainer, model, inputs) -> torch.Tensor:
    """One micro-batch of a gradient strategy: per-task gradients of the shared and task-specific parameters are
    accumulated, and combined by the strategy into `.grad` at the step's last micro-batch. Returns the weighted loss
    (divided by the accumulation steps, as Trainer's `training_step` returns it) for logging."""
    model.train()
    inputs = trainer._prepare_inputs(inputs)
    sync_off = trainer.accelerator.no_sync(model) if trainer.args.world_size > 1 else contextlib.nullcontext()
    with sync_off, trainer.compute_loss_context_manager():
        outputs = model(**inputs)
    task_losses, auxiliary_losses = trainer._finite_losses(outputs)
    unwrapped = trainer.accelerator.unwrap_model(model)
    shared = [p for _, p in unwrapped.shared_parameters()]
    shared_ids = {id(p) for p in shared}
    specific = [p for p in unwrapped.parameters() if p.requires_grad and id(p) not in shared_ids]
    loss_scale = 1.0  # fp16: gradients stay scaled, the optimizer step unscales them
    if trainer.accelerator.scaler is not None:
        # `scale()` (not `get_scale()`): it also starts the scaler's state, which its unscale_/step assert on.
        loss_scale = float(trainer.accelerator.scaler.scale(torch.ones((), device=trainer.args.device)))
    rows = {name: int(indices.numel()) for name, indices in outputs.task_indices.items()}
    accumulation_steps = trainer.current_gradient_accumulation_steps
    losses = trainer.task_gradients.add(trainer._scaled(task_losses), trainer._auxiliary_loss(auxiliary_losses), shared,
                                        specific, rows, auxiliary_scale=1.0 / accumulation_steps)
    if trainer.accelerator.sync_gradients:  # the step's last micro-batch: combine the step's task gradients once
        trainer.task_gradients.apply(shared, specific, trainer.weighting, trainer.task_names, loss_scale)
    trainer.loss_tracker.add(losses, auxiliary_losses)
    weights = trainer.weighting.weights()
    total = sum(weights.get(name, 1.0) * value for name, value in losses.items())
    return torch.tensor(total / accumulation_steps, device=trainer.args.device)


def sync_weighting_gradients(weighting, args, accelerator) -> None:
    """Learnable task weights live outside the DDP-wrapped model: average their gradients by hand."""
    if args.world_size <= 1 or not accelerator.sync_gradients or not dist.is_initialized():
        return
    for p in weighting.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()
