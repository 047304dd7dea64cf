"""Task samplers: the `TaskSampler` base class (task probabilities as a function of training progress), the
`SAMPLERS` registry and `build_task_sampler`. Each sampler lives in its own module and registers itself; the
batch sampler that turns probabilities into batches is in `batch_sampler.py`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from ..utils.registry import Registry


SAMPLERS: Registry[type[TaskSampler]] = Registry("sampling")


class TaskSampler:
    """Task probabilities as a function of training progress. Subclasses implement `probabilities`.

    Samplers that learn from training (see `learned.py`) override `probabilities_at` (per optimizer step)
    and the `on_*` hooks, and set `requires_evaluation` when they learn from evaluation metrics.
    """

    name: ClassVar[str] = ""
    requires_evaluation: ClassVar[bool] = False

    @property
    def learns(self) -> bool:
        """Whether the probabilities depend on training (the batch plan then cannot be known in advance)."""
        return self.learns_from_training()

    @classmethod
    def learns_from_training(cls) -> bool:
        """`learns` of the class, for checks before any sampler is built."""
        return cls.probabilities_at is not TaskSampler.probabilities_at

    def __init__(self, task_sizes: Sequence[int]):
        if not task_sizes:
            raise ValueError("Task sampling needs at least one task.")
        if any(size <= 0 for size in task_sizes):
            raise ValueError(f"Every task needs at least one training example; got sizes {list(task_sizes)}.")
        self.task_sizes = torch.tensor(list(task_sizes), dtype=torch.float64)

    def probabilities(self, epoch: int, num_epochs: int) -> torch.Tensor:
        """Probability of each task (in task order) during `epoch` (0-based) of `num_epochs`."""
        raise NotImplementedError

    def probabilities_at(self, step: int, epoch: int, num_epochs: int) -> torch.Tensor:
        """Probabilities for global optimizer step `step`; must return the same values when a step is replayed
        (resume), so learned samplers record what they used."""
        return self.probabilities(epoch, num_epochs)

    def on_step_end(self, step: int, task_losses: dict[str, float]) -> None:
        """After each optimizer step, with the mean training loss of each task seen in it."""

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        """After each evaluation, with the metrics (`eval_<task>_loss`, `eval_<task>_<metric>`, ...)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors that must survive a resume (none for the stateless samplers here)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


def build_task_sampler(name: str, task_sizes: Sequence[int], **kwargs) -> TaskSampler:
    cls = SAMPLERS.get(name)
    import inspect

    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "task_sizes")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"Unknown argument(s) {unknown} for sampling {name!r}. It accepts: {', '.join(accepted) or '(none)'}.")
    return cls(task_sizes, **kwargs)
