"""The trainer's own callback: keeps the task sampler, the weighting strategy and the adversarial schedule in
step with Trainer's loop (epochs, optimizer steps), and drops steps whose loss or gradient was not finite
(see `non_finite.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from transformers import TrainerCallback
from transformers.utils import logging

from ...utils.distributed import is_distributed
from ..non_finite import NonFiniteLossError, gradients_are_finite, non_finite_message, norm_is_finite


if TYPE_CHECKING:
    from .trainer_protocol import TrainerProtocol


logger = logging.get_logger(__name__)


class MultiTaskCallback(TrainerCallback):
    def __init__(self, trainer: TrainerProtocol):
        self.trainer = trainer
        self._weighting_state: dict[str, torch.Tensor] | None = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        sampler = self.trainer.batch_sampler
        if sampler is not None:
            # On resume Trainer may reach the sampler only through wrappers; derive the epoch from the step count.
            epoch = state.global_step // sampler.steps_per_epoch
            sampler.set_epoch(epoch)
            self.trainer.weighting.on_epoch_begin(epoch)

    def on_step_begin(self, args, state, control, **kwargs):
        discriminator = getattr(self.trainer.model, "discriminator", None)
        if discriminator is not None:
            discriminator.coefficient = self.trainer.gradient_reversal_coefficient()
        if args.non_finite_loss == "skip":
            # Gradient strategies update their state while combining gradients: a skipped step restores this copy.
            self._weighting_state = {k: v.detach().clone() for k, v in self.trainer.weighting.state_dict().items()}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        trainer, tracker = self.trainer, self.trainer.loss_tracker
        parameters = [p for group in trainer.optimizer.param_groups for p in group["params"]]
        bad_loss = bool(tracker.non_finite_tasks)
        # With an fp16 GradScaler, overflowing gradients are expected: the scaler skips those steps itself.
        check_gradients = not bad_loss and trainer.accelerator.scaler is None
        model_norm, trainer.step_grad_norm = trainer.step_grad_norm, None
        if not check_gradients:
            bad_gradient = False
        elif model_norm is None:  # no norm from Trainer (e.g. DeepSpeed keeps it): one pass over every gradient
            bad_gradient = not gradients_are_finite(parameters)
        else:
            bad_gradient = not norm_is_finite(model_norm) or not gradients_are_finite(trainer.weighting.parameters())
        flag = torch.tensor([float(bad_loss), float(bad_gradient)], device=args.device)
        if is_distributed():
            dist.all_reduce(flag)  # every process skips (or stops at) the same step
        if not bool(flag.any()):
            tracker.step_skipped = False
            return
        step = state.global_step
        if args.non_finite_loss == "error":
            raise NonFiniteLossError(
                non_finite_message(tracker.non_finite_tasks, step, bool(flag[1]), elsewhere=bool(flag[0]) and not bad_loss)
            )
        for p in parameters:  # nothing of this step reaches the weights, on any process
            p.grad = None
        for p in trainer.weighting.parameters():
            p.grad = None
        if self._weighting_state is not None:
            trainer.weighting.load_state_dict(self._weighting_state)
        what = f"non-finite loss for {sorted(tracker.non_finite_tasks)}" if bad_loss else (
            "non-finite loss on another process" if flag[0] else "non-finite gradient")
        logger.warning(f"Skipped optimizer step {step} ({what}); non_finite_loss='skip'.")
        tracker.skipped_steps += 1
        tracker.non_finite_tasks.clear()
        tracker.step_skipped = True

    def on_optimizer_step(self, args, state, control, **kwargs):
        # Trainer zeroes the model's gradients only; learnable task weights live beside the model.
        for p in self.trainer.weighting.parameters():
            p.grad = None

    def on_step_end(self, args, state, control, **kwargs):
        tracker = self.trainer.loss_tracker
        step_losses = tracker.pop_step(args.device)  # on every process: it all-reduces
        reevaluation = self.trainer.step_reevaluation
        if reevaluation is not None and tracker.step_skipped:
            reevaluation.discard()
        elif reevaluation is not None:  # the same batches through the updated model (all-reduces too)
            self.trainer.weighting.on_step_reevaluated(step_losses, reevaluation.losses_after(self.trainer.model, args.device))
        if step_losses and not tracker.step_skipped:
            self.trainer.weighting.on_step_end(step_losses)
            sampler = getattr(self.trainer, "task_sampler", None)
            if sampler is not None:
                sampler.on_step_end(state.global_step - 1, step_losses)
        tracker.step_skipped = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        sampler = getattr(self.trainer, "task_sampler", None)
        if sampler is not None and metrics:
            sampler.on_evaluate(state.global_step, metrics)

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer.weighting.on_epoch_end(max(0, round(state.epoch) - 1))
