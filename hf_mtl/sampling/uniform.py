"""Uniform sampling: every task equally often."""

from __future__ import annotations

import torch

from .base import SAMPLERS, TaskSampler


@SAMPLERS.register("uniform")
class UniformSampler(TaskSampler):
    """p_i = 1/K: each task trains equally often, small tasks are repeated, large ones under-sampled."""

    def probabilities(self, epoch, num_epochs):
        return torch.full_like(self.task_sizes, 1.0 / len(self.task_sizes))
