"""Fixed, user-chosen task weights (linear scalarisation): the baseline every adaptive method is compared against."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from ._utils import present_tasks, stack_losses
from .base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("static")
class StaticWeighting(LossWeighting):
    r"""Loss = Σ_i w_i · L_i over the tasks present in the step, with constant w_i.

    No paper: this is the linear-scalarisation baseline of every multi-task paper (equal weights by default).

    Args:
        task_names: every task of the model.
        weights (`dict[str, float]`, *optional*): weight of each task. Tasks left out keep the default 1.0, so
            `{"ner": 0.5}` down-weights one task without listing the others; a name that is not a task is an error
            (a typo would otherwise silently train with the wrong weights). Weights must be finite and >= 0
            (0 switches a task's loss off).

    The weights are configuration, not training state: they are a non-persistent buffer, so `state_dict()` is empty
    and resuming uses the weights given at construction.
    """

    name = "static"

    def __init__(self, task_names: Sequence[str], weights: dict[str, float] | None = None):
        super().__init__(task_names)
        weights = {} if weights is None else weights
        if not isinstance(weights, dict):
            raise ValueError(
                f"Weighting 'static': `weights` must be a dict task name -> weight, got {type(weights).__name__}."
            )
        unknown = [name for name in weights if name not in self.task_names]
        if unknown:
            raise ValueError(
                f"Weighting 'static': `weights` names unknown task(s) {unknown}; the tasks are {self.task_names}."
            )
        for task, value in weights.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"Weighting 'static': the weight of task {task!r} must be a finite number >= 0, got {value!r}."
                )
        values = [float(weights.get(name, 1.0)) for name in self.task_names]
        self.register_buffer("weight", torch.tensor(values), persistent=False)

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.weight.tolist()))

    def combine(self, task_losses: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_tasks(task_losses)
        names, index = present_tasks(self.task_names, task_losses)
        losses = stack_losses(self.name, names, task_losses)
        return (self.weight[index].to(losses) * losses).sum()
