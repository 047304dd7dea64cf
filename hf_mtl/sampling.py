"""Which task each batch (or row) comes from: task samplers and the rank-aware batch sampler built on them.

A `TaskSampler` gives task probabilities for an epoch (`proportional`, `uniform`, `temperature`, `annealed`);
`MultiTaskBatchSampler` turns them into batches of indices into a `MultiTaskDataset`:

- `batching="per_task"`: every optimizer step draws ONE task, then `batch_size x processes x accumulation` rows of
  it; each process takes its own slice of each micro-batch, so all processes train the same task at the same step,
  and accumulating 4 micro-batches of 2 rows sees exactly the rows of one batch of 8.
- `batching="mixed"`: every optimizer step draws rows of several tasks in proportion to the probabilities
  (stratified, at least one row per task when the step has room for all), shuffled, so each micro-batch mixes
  tasks and the model runs one encoder pass over them.

An epoch is `ceil(total rows / rows per optimizer step)` steps, as in Trainer; small tasks are cycled (reshuffled
each pass) when a sampler oversamples them. All randomness comes from a `torch.Generator` seeded with
`(seed, epoch)`, so a resumed run sees the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
from torch.utils.data import Sampler

from .registry import Registry


SAMPLERS: Registry[type[TaskSampler]] = Registry("sampling")
BATCHING_CHOICES = ("per_task", "mixed")


class TaskSampler:
    """Task probabilities as a function of training progress. Subclasses implement `probabilities`.

    Samplers that learn from training (see `learned_sampling.py`) override `probabilities_at` (per optimizer step)
    and the `on_*` hooks, and set `requires_evaluation` when they learn from evaluation metrics.
    """

    name: ClassVar[str] = ""
    requires_evaluation: ClassVar[bool] = False

    @property
    def learns(self) -> bool:
        """Whether the probabilities depend on training (the batch plan then cannot be known in advance)."""
        return type(self).probabilities_at is not TaskSampler.probabilities_at

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


@SAMPLERS.register("proportional")
class ProportionalSampler(TaskSampler):
    """p_i ∝ n_i: every example is seen about once per epoch; large tasks dominate."""

    def probabilities(self, epoch, num_epochs):
        return self.task_sizes / self.task_sizes.sum()


@SAMPLERS.register("uniform")
class UniformSampler(TaskSampler):
    """p_i = 1/K: each task trains equally often, small tasks are repeated, large ones under-sampled."""

    def probabilities(self, epoch, num_epochs):
        return torch.full_like(self.task_sizes, 1.0 / len(self.task_sizes))


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


def build_task_sampler(name: str, task_sizes: Sequence[int], **kwargs) -> TaskSampler:
    cls = SAMPLERS.get(name)
    import inspect

    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "task_sizes")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"Unknown argument(s) {unknown} for sampling {name!r}. It accepts: {', '.join(accepted) or '(none)'}.")
    return cls(task_sizes, **kwargs)


def stratified_counts(probabilities: torch.Tensor, total: int, generator: torch.Generator) -> torch.Tensor:
    """Integer row counts summing to `total`, proportional to `probabilities` (largest remainders, ties drawn at
    random); every task with p > 0 gets at least one row when `total` allows it."""
    expected = probabilities * total
    counts = expected.floor().long()
    positive = probabilities > 0
    if total >= int(positive.sum()):
        counts = torch.where(positive & (counts == 0), torch.ones_like(counts), counts)
    while counts.sum() > total:  # the minimum of one row overshot: take from the most over-served task that keeps one
        surplus = torch.where(counts > 1, counts - expected, torch.full_like(expected, -math.inf))
        counts[torch.argmax(surplus)] -= 1
    remainder = total - int(counts.sum())
    if remainder > 0:
        residual = (expected - counts).clamp(min=0) + 1e-12 * positive
        chosen = torch.multinomial(residual / residual.sum(), remainder, replacement=False, generator=generator)
        counts[chosen] += 1
    return counts


class MultiTaskBatchSampler(Sampler[list[int]]):
    """Yields this process's micro-batches of indices into a `MultiTaskDataset` (see module docstring).

    Args:
        task_sizes: rows per task, in the dataset's task order.
        task_sampler: gives the task probabilities.
        batch_size: rows per micro-batch on one process.
        batching: `"per_task"` or `"mixed"`.
        gradient_accumulation_steps, num_replicas, rank: the run's layout.
        seed: base seed; the epoch is mixed in.
        num_epochs: planned epochs (annealed sampling needs it).
    """

    def __init__(
        self,
        task_sizes: Sequence[int],
        task_sampler: TaskSampler,
        batch_size: int,
        batching: str = "per_task",
        gradient_accumulation_steps: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        num_epochs: int = 1,
    ):
        if batching not in BATCHING_CHOICES:
            raise ValueError(f"Unknown batching {batching!r}. Choose one of: {', '.join(BATCHING_CHOICES)}.")
        if batch_size < 1 or gradient_accumulation_steps < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"Invalid layout: batch_size={batch_size}, gradient_accumulation_steps={gradient_accumulation_steps}, "
                f"num_replicas={num_replicas}, rank={rank}."
            )
        self.task_sizes = [int(size) for size in task_sizes]
        self.offsets = [sum(self.task_sizes[:i]) for i in range(len(self.task_sizes))]
        self.task_sampler = task_sampler
        self.batch_size = batch_size
        self.batching = batching
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.num_epochs = max(1, num_epochs)
        self.epoch = 0

    @property
    def rows_per_step(self) -> int:
        return self.batch_size * self.num_replicas * self.gradient_accumulation_steps

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch."""
        return max(1, math.ceil(sum(self.task_sizes) / self.rows_per_step))

    def __len__(self) -> int:
        return self.steps_per_epoch * self.gradient_accumulation_steps

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def step_plan(self, epoch: int) -> Iterator[list[int]]:
        """Global rows (dataset indices) of each optimizer step of `epoch`, identical on every process."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        cursors = [_TaskCursor(size, generator) for size in self.task_sizes]
        for step in range(self.steps_per_epoch):
            global_step = epoch * self.steps_per_epoch + step
            probabilities = self.task_sampler.probabilities_at(global_step, epoch, self.num_epochs)
            if self.batching == "per_task":
                task = int(torch.multinomial(probabilities.float(), 1, generator=generator))
                rows = [self.offsets[task] + i for i in cursors[task].take(self.rows_per_step)]
            else:
                counts = stratified_counts(probabilities, self.rows_per_step, generator)
                rows = [self.offsets[t] + i for t, n in enumerate(counts.tolist()) for i in cursors[t].take(n)]
                rows = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
            yield rows

    def __iter__(self) -> Iterator[list[int]]:
        b, accumulation = self.batch_size, self.gradient_accumulation_steps
        for rows in self.step_plan(self.epoch):
            for micro in range(accumulation):
                start = (self.rank * accumulation + micro) * b
                yield rows[start : start + b]


class _TaskCursor:
    """Walks a task's rows in a random order, reshuffling at each pass (so oversampled tasks cycle)."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size, self.generator = size, generator
        self.order: list[int] = []
        self.position = 0

    def take(self, count: int) -> list[int]:
        taken = []
        while len(taken) < count:
            if self.position >= len(self.order):
                self.order = torch.randperm(self.size, generator=self.generator).tolist()
                self.position = 0
            chunk = self.order[self.position : self.position + count - len(taken)]
            self.position += len(chunk)
            taken.extend(chunk)
        return taken
