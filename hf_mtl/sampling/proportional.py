"""Proportional sampling: each task in proportion to its size."""

from __future__ import annotations

from .base import SAMPLERS, TaskSampler


@SAMPLERS.register("proportional")
class ProportionalSampler(TaskSampler):
    """p_i ∝ n_i: every example is seen about once per epoch; large tasks dominate."""

    def probabilities(self, epoch, num_epochs):
        return self.task_sizes / self.task_sizes.sum()
