"""Annealed sampling: proportional at first, closer to uniform by the last epoch."""

from __future__ import annotations

from .base import SAMPLERS, TaskSampler


@SAMPLERS.register("annealed")
class AnnealedSampler(TaskSampler):
    """Annealed sampling (Stickland & Murray, ICML 2019, "BERT and PALs", arXiv:1902.02671).

    p_i ∝ n_i^α with α = 1 − 0.8 (e − 1)/(E − 1) for epoch e = 1..E: proportional at first, closer to uniform at the
    end, so the small tasks are not forgotten. With a single epoch, α = 1.
    """

    def probabilities(self, epoch, num_epochs):
        alpha = 1.0 if num_epochs <= 1 else 1.0 - 0.8 * epoch / (num_epochs - 1)
        weights = self.task_sizes**alpha
        return weights / weights.sum()
