"""Which task each batch (or row) comes from: one module per task sampler, each registering itself in `SAMPLERS`
(importing this package registers them all), and the batch sampler built on them."""

from .annealed import AnnealedSampler
from .base import SAMPLERS, TaskSampler, build_task_sampler
from .batch_sampler import BATCHING_CHOICES, MultiTaskBatchSampler, stratified_counts
from .fixed import FixedSampler
from .learned import LearnedSampler
from .proportional import ProportionalSampler
from .rehearsal import RehearsalSampler
from .temperature import TemperatureSampler
from .uniform import UniformSampler


__all__ = [
    "BATCHING_CHOICES",
    "SAMPLERS",
    "AnnealedSampler",
    "FixedSampler",
    "LearnedSampler",
    "MultiTaskBatchSampler",
    "ProportionalSampler",
    "RehearsalSampler",
    "TaskSampler",
    "TemperatureSampler",
    "UniformSampler",
    "build_task_sampler",
    "stratified_counts",
]
