"""The two kinds of task-balancing strategy and the contract the trainer relies on.

- `LossWeighting` turns the per-task losses of a step into one differentiable scalar (static weights,
  uncertainty, DWA, FAMO): one backward pass, like single-task training.
- `GradientWeighting` turns per-task gradients of the *shared* parameters into one update (GradNorm, PCGrad,
  CAGrad): the trainer computes one gradient per task present in the step (K backward passes).

Strategies are `nn.Module`s so learnable quantities (e.g. uncertainty log-variances) are parameters the trainer
adds to its optimizer, and everything else that must survive a resume is a buffer. `state_dict()` holds tensors
only (it is saved with safetensors next to each checkpoint); `load_state_dict(state_dict())` restores the exact
behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from ..utils.registry import Registry


WEIGHTINGS: Registry[type[WeightingStrategy]] = Registry("weighting")
"""Weighting name (as in `MultiTaskTrainingArguments.weighting` and recipes) -> strategy class."""


class WeightingStrategy(nn.Module):
    """Base class. Subclasses set `name`, register with `@WEIGHTINGS.register(name)`, and take their
    hyperparameters as keyword arguments with the paper's defaults (recipes pass them as `weighting_kwargs`).

    Class attributes:
        name: registry key.
        requires_task_gradients: the trainer must call `combine_gradients` with per-task gradients.
        needs_all_tasks_per_step: the method is defined on steps that see every task (FAMO, gradient surgery);
            the trainer then refuses `batching="per_task"` (one task per step) and asks for mixed batches.
        needs_representation: `combine` takes `representation=`, the hidden states the heads read (the model
            output's `head_inputs`), to measure each task's gradient there (`rep_norm`).
        reevaluates_step (instance attribute): after each optimizer step the trainer runs the step's batches again
            (no gradient) and calls `on_step_reevaluated` with the losses before and after the update (FAMO's
            same-batch update).
        default_lr: learning rate of the strategy's `nn.Parameter`s when the user sets none (`None`: the
            training learning rate).
    """

    name: ClassVar[str] = ""
    requires_task_gradients: ClassVar[bool] = False
    needs_all_tasks_per_step: ClassVar[bool] = False
    needs_representation: ClassVar[bool] = False
    default_lr: ClassVar[float | None] = None
    reevaluates_step: bool = False

    def __init__(self, task_names: Sequence[str]):
        super().__init__()
        if not task_names:
            raise ValueError(f"Weighting {self.name!r} needs at least one task.")
        self.task_names = list(task_names)

    def weights(self) -> dict[str, float]:
        """Current weight of every task (logged as `weight_<task>`)."""
        raise NotImplementedError

    def on_step_end(self, task_losses: dict[str, float]) -> None:
        """Called once per optimizer step with the mean (detached) loss of each task seen during the step."""
        self._check_tasks(task_losses)

    def on_step_reevaluated(self, before: dict[str, float], after: dict[str, float]) -> None:
        """With `reevaluates_step`: each task's mean loss on the step's batches before and after the update."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Called at the start of each training epoch, also the first one of a resumed run (index starting at 0)."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called at the end of each training epoch (epoch index starting at 0)."""

    def _check_tasks(self, task_values: dict) -> None:
        unknown = [name for name in task_values if name not in self.task_names]
        if unknown:
            raise ValueError(f"Weighting {self.name!r} got unknown task(s) {unknown}; known: {self.task_names}.")


class LossWeighting(WeightingStrategy):
    """Combines per-task losses into the scalar that is back-propagated once."""

    def combine(self, task_losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Differentiable scalar from the losses of the tasks present in this step (a subset of `task_names`)."""
        raise NotImplementedError

    def forward(self, task_losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """`strategy(task_losses)` is `combine`: lets a model call it inside its own `forward` (needed under DDP when
        the strategy has parameters, e.g. uncertainty log-variances)."""
        return self.combine(task_losses)


class GradientWeighting(WeightingStrategy):
    """Combines per-task gradients of the shared parameters into one gradient."""

    requires_task_gradients = True
    needs_all_tasks_per_step = True

    def combine_gradients(
        self, task_gradients: dict[str, torch.Tensor], task_losses: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Combined gradient of the shared parameters.

        Args:
            task_gradients: flattened (1-D, same length) gradient of each present task's loss w.r.t. the shared
                parameters; identical on every process (the trainer all-reduces them first).
            task_losses: the (detached) loss of each present task.

        Returns:
            The 1-D gradient to apply to the shared parameters. Task-specific parameters (heads) receive their
            own task's gradient scaled by `weights()[task]`.
        """
        raise NotImplementedError


def build_weighting(name: str, task_names: Sequence[str], **kwargs) -> WeightingStrategy:
    """Instantiate a registered strategy; unknown names and unknown hyperparameters fail with the choices."""
    cls = WEIGHTINGS.get(name)
    import inspect

    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "task_names")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown argument(s) {unknown} for weighting {name!r}. It accepts: {', '.join(accepted) or '(none)'}."
        )
    return cls(task_names, **kwargs)
