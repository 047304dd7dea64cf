"""The trainer's own callback: keeps the task sampler, the weighting strategy and the adversarial schedule in
step with Trainer's loop (epochs, optimizer steps), and skips steps whose loss was not finite."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from transformers import TrainerCallback


if TYPE_CHECKING:
    from .trainer import MultiTaskTrainer


class MultiTaskCallback(TrainerCallback):
    def __init__(self, trainer: MultiTaskTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        sampler = self.trainer.batch_sampler
        if sampler is not None:
            # On resume Trainer may reach the sampler only through wrappers; derive the epoch from the step count.
            sampler.set_epoch(state.global_step // sampler.steps_per_epoch)

    def on_step_begin(self, args, state, control, **kwargs):
        discriminator = getattr(self.trainer.model, "discriminator", None)
        if discriminator is not None:
            discriminator.coefficient = self.trainer.gradient_reversal_coefficient()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        tracker = self.trainer.loss_tracker
        flag = torch.tensor(float(bool(tracker.non_finite_tasks)), device=args.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flag)
        if flag.item() > 0:  # non_finite_loss="skip": drop every gradient of this step on every process
            for group in self.trainer.optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            tracker.skipped_steps += 1
            tracker.non_finite_tasks.clear()

    def on_optimizer_step(self, args, state, control, **kwargs):
        # Trainer zeroes the model's gradients only; learnable task weights live beside the model.
        for p in self.trainer.weighting.parameters():
            p.grad = None

    def on_step_end(self, args, state, control, **kwargs):
        step_losses = self.trainer.loss_tracker.pop_step(args.device)
        if step_losses:
            self.trainer.weighting.on_step_end(step_losses)
            sampler = getattr(self.trainer, "task_sampler", None)
            if sampler is not None:
                sampler.on_step_end(state.global_step - 1, step_losses)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        sampler = getattr(self.trainer, "task_sampler", None)
        if sampler is not None and metrics:
            sampler.on_evaluate(state.global_step, metrics)

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer.weighting.on_epoch_end(max(0, round(state.epoch) - 1))
