"""Running an optimizer step's batches again after the update, without gradients: the loss decrease FAMO's paper
measures on the same batch (`FAMOWeighting(update="same_batch")`, any weighting with `reevaluates_step`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .loss_tracking import TaskLossTracker
from .non_finite import split_finite


class StepReevaluation:
    """Keeps the micro-batches of the current optimizer step; `losses_after` runs them through the updated model and
    returns each task's mean loss, aggregated like the step's own losses (over micro-batches and processes)."""

    def __init__(self, task_names: list[str]):
        self.batches: list[dict[str, Any]] = []
        self.tracker = TaskLossTracker(task_names)

    def keep(self, inputs: dict[str, Any]) -> None:
        self.batches.append(inputs)

    def losses_after(self, model: nn.Module, device) -> dict[str, float]:
        """Every process calls this at the same step (the means are all-reduced). The model stays in training mode,
        as in the official code, so dropout is drawn as it was for the losses before the update."""
        with torch.no_grad():
            for inputs in self.batches:
                outputs = model(**inputs)
                task_losses, _, _ = split_finite(dict(outputs.task_losses or {}), {})
                self.tracker.add({name: loss.detach() for name, loss in task_losses.items()})
        self.batches.clear()
        return self.tracker.pop_step(device)

    def discard(self) -> None:
        """A skipped step: its batches are not run again (on every process alike: the skip is all-reduced)."""
        self.batches.clear()
