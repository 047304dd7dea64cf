"""Temperature sampling: sizes raised to 1/T, between proportional and uniform."""

from __future__ import annotations

from .base import SAMPLERS, TaskSampler


@SAMPLERS.register("temperature")
class TemperatureSampler(TaskSampler):
    """p_i ∝ n_i^(1/T) (Arivazhagan et al. 2019; T=1 is proportional, T→∞ uniform).

    Args:
        temperature (`float`, defaults to 2.0): T > 0.
    """

    def __init__(self, task_sizes, temperature: float = 2.0):
        super().__init__(task_sizes)
        if not temperature > 0:
            raise ValueError(f"Sampling temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)

    def probabilities(self, epoch, num_epochs):
        weights = self.task_sizes ** (1.0 / self.temperature)
        return weights / weights.sum()
