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

import torch
from torch.utils.data import Sampler

from .base import TaskSampler


BATCHING_CHOICES = ("per_task", "mixed")


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

    def planned_steps(self, max_steps: int, num_train_epochs: float) -> int:
        """Optimizer steps of a run (Trainer's rule): `max_steps` when > 0, else `num_train_epochs` of this plan."""
        return max_steps if max_steps > 0 else math.ceil(num_train_epochs * self.steps_per_epoch)

    def epochs_for_steps(self, steps: int) -> int:
        """Epochs of the plan that `steps` optimizer steps reach into (at least 1): what `num_epochs` should be."""
        return max(1, math.ceil(steps / self.steps_per_epoch))

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
