"""Fixed task probabilities, set by hand (a new task's share, or tasks switched off with zeros)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..utils.input_checks import check_names_every_task
from .base import SAMPLERS, TaskSampler


@SAMPLERS.register("fixed")
class FixedSampler(TaskSampler):
    """Fixed task probabilities (normalised; zeros allowed: that task is never drawn).

    Args:
        probabilities (`list[float]` or `dict[str, float]`): one non-negative weight per task, in task order, or
            `{task: weight}` naming every task (the trainer puts a mapping in its task order, `in_task_order`).
    """

    def __init__(self, task_sizes: Sequence[int], probabilities: Sequence[float] | None = None):
        super().__init__(task_sizes)
        if probabilities is None or len(probabilities) != len(task_sizes):
            raise ValueError(
                f"sampling='fixed' needs `probabilities` with one weight per task ({len(task_sizes)} tasks), "
                f"got {probabilities!r}."
            )
        weights = torch.tensor([float(p) for p in probabilities], dtype=torch.float64)
        if (weights < 0).any() or not torch.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError(f"Task probabilities must be finite, >= 0 and not all zero; got {list(probabilities)}.")
        self.fixed = weights / weights.sum()

    def probabilities(self, epoch, num_epochs):
        return self.fixed


def in_task_order(probabilities, task_names: Sequence[str]):
    """`{task: weight}` -> the list in `task_names` order (a list passes through); unknown and missing names are errors."""
    if not isinstance(probabilities, Mapping):
        return probabilities
    check_names_every_task(probabilities, task_names, "sampling='fixed' `probabilities`")
    return [probabilities[name] for name in task_names]
