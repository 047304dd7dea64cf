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
each pass) when a sampler oversamples them. All randomness comes from `torch.Generator`s seeded with
`(seed, epoch)`, so a resumed run sees the same batches.

Length grouping (`lengths`, Trainer's `train_sampling_strategy="group_by_length"`): a batch is padded to its longest
row, so random batches of short and long rows waste most of their tokens (dev suite: 39.6 padded tokens per row of
16.8). Within each window of `LENGTH_GROUP_STEPS` steps, every task's rows are sorted by length and dealt back to
the steps that drew that task, following one random order of the window's steps: each step keeps its tasks and row
counts (so task sampling, the task mix of mixed batches and `planned_task_rows` are unchanged) and its rows come
from one length level of every task (dev suite, mixed batches: 25 padded tokens per row; one task per step: 19).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from .base import TaskSampler


BATCHING_CHOICES = ("per_task", "mixed")
# Steps whose rows are regrouped by length together (Transformers' LengthGroupedSampler sorts 50 batches at a time).
LENGTH_GROUP_STEPS = 50


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
        lengths: each task's row lengths (tokens), in the dataset's order; when given, steps are grouped by length
            (see the module docstring). Not with a sampler that learns (its probabilities change at every step).
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
        lengths: Sequence[Sequence[int]] | None = None,
    ):
        if batching not in BATCHING_CHOICES:
            raise ValueError(f"Unknown batching {batching!r}. Choose one of: {', '.join(BATCHING_CHOICES)}.")
        if batch_size < 1 or gradient_accumulation_steps < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"Invalid layout: batch_size={batch_size}, gradient_accumulation_steps={gradient_accumulation_steps}, "
                f"num_replicas={num_replicas}, rank={rank}."
            )
        self.task_sizes = [int(size) for size in task_sizes]
        if lengths is not None:
            lengths = [[int(length) for length in task_lengths] for task_lengths in lengths]
            if [len(task_lengths) for task_lengths in lengths] != self.task_sizes:
                raise ValueError(f"`lengths` holds {[len(x) for x in lengths]} rows per task; the tasks have "
                                 f"{self.task_sizes}: give one length per row of each task.")
            if task_sampler.learns:
                raise ValueError("Grouping batches by length plans steps ahead, and a learned task sampler changes its "
                                 "probabilities at every step: use another sampling, or do not group by length "
                                 "(train_sampling_strategy='random').")
        self.lengths = lengths
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
        steps = self._random_step_plan(epoch)
        if self.lengths is None:
            yield from steps
            return
        # A second generator, so the tasks and rows drawn are those of the ungrouped plan (only their places change).
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 7_919)
        window: list[list[int]] = []
        for rows in steps:
            window.append(rows)
            if len(window) == LENGTH_GROUP_STEPS:
                yield from self._grouped_by_length(window, generator)
                window = []
        yield from self._grouped_by_length(window, generator)

    def _grouped_by_length(self, window: list[list[int]], generator: torch.Generator) -> list[list[int]]:
        """The window's steps with each task's rows sorted by length and dealt back to the steps in one random order
        of the steps (every step keeps its per-task row counts). Mixed steps are shuffled again, so that
        micro-batches keep the task mix; a one-task step stays sorted, so its micro-batches are even in length."""
        if not window:
            return []
        level = torch.randperm(len(window), generator=generator).tolist()  # step level[j] takes the j-th shortest rows
        taken: dict[int, list[tuple[int, int]]] = {}  # task -> (row, step) of every row the window drew of it
        for step, rows in enumerate(window):
            for row in rows:
                taken.setdefault(bisect.bisect_right(self.offsets, row) - 1, []).append((row, step))
        grouped: list[list[int]] = [[] for _ in window]
        for task in sorted(taken):
            offset = self.offsets[task]
            rows = sorted((row for row, _ in taken[task]), key=lambda row: self.lengths[task][row - offset])
            counts = Counter(step for _, step in taken[task])
            position = 0
            for step in level:
                grouped[step].extend(rows[position : position + counts[step]])
                position += counts[step]
        if self.batching == "mixed":
            grouped = [[rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()] for rows in grouped]
        return grouped

    def _random_step_plan(self, epoch: int) -> Iterator[list[int]]:
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
