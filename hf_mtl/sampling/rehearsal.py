"""Rehearsal sampling, for learning a new task without forgetting the old ones.

Registered in `hf_mtl.sampling.SAMPLERS`, so `MultiTaskTrainingArguments(sampling="rehearsal",
sampling_kwargs={"ratio": 0.2, "new_tasks": [3]})` works with the stock `MultiTaskTrainer`.

Rehearsal (experience replay) keeps a fraction of the updates on the old tasks' data while the new task is
learned, the simplest remedy for catastrophic forgetting (Robins 1995, "Catastrophic forgetting, rehearsal and
pseudorehearsal"; de Masson d'Autume et al., NeurIPS 2019, "Episodic Memory in Lifelong Language Learning").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import SAMPLERS, TaskSampler


OLD_TASK_WEIGHTINGS = ("proportional", "uniform")


@SAMPLERS.register("rehearsal")
class RehearsalSampler(TaskSampler):
    """The new task(s) get `1 - ratio` of the draws; the rehearsed old tasks share `ratio`.

    Args:
        ratio (`float`, defaults to 0.2): share of steps (`batching="per_task"`) or rows (`"mixed"`) on old tasks,
            in [0, 1). 0 trains the new task(s) only.
        new_tasks (`list[int]`, *optional*): indices of the new tasks in the model's task order. Defaults to the
            last task (the one `add_task` appended).
        rehearse_tasks (`list[int]`, *optional*): indices of the old tasks to rehearse. Defaults to every task that
            is not new. Tasks in neither list are never drawn (e.g. old tasks without training data).
        old_task_weighting (`str`, defaults to `"proportional"`): how `ratio` is split among the rehearsed tasks:
            `proportional` to their sizes or `uniform`. New tasks share `1 - ratio` in proportion to their sizes.
    """

    def __init__(
        self,
        task_sizes: Sequence[int],
        ratio: float = 0.2,
        new_tasks: Sequence[int] | None = None,
        rehearse_tasks: Sequence[int] | None = None,
        old_task_weighting: str = "proportional",
    ):
        super().__init__(task_sizes)
        count = len(task_sizes)
        if not 0.0 <= float(ratio) < 1.0:
            raise ValueError(f"Rehearsal `ratio` is the share of old-task draws, in [0, 1); got {ratio}.")
        if old_task_weighting not in OLD_TASK_WEIGHTINGS:
            raise ValueError(f"Unknown old_task_weighting {old_task_weighting!r}. Choose one of: {', '.join(OLD_TASK_WEIGHTINGS)}.")
        new = _indices(new_tasks if new_tasks is not None else [count - 1], count, "new_tasks")
        old = _indices(rehearse_tasks if rehearse_tasks is not None else [i for i in range(count) if i not in new], count, "rehearse_tasks")
        if not new:
            raise ValueError("Rehearsal needs at least one new task (`new_tasks`).")
        overlap = sorted(set(new) & set(old))
        if overlap:
            raise ValueError(f"Task indices {overlap} are both new and rehearsed; each task is one or the other.")
        if ratio > 0 and not old:
            raise ValueError(f"Rehearsal ratio {ratio} > 0 but no old task to rehearse: give old tasks training data or set ratio=0.")
        weights = torch.zeros(count, dtype=torch.float64)
        sizes = self.task_sizes
        weights[new] = (1.0 - ratio) * sizes[new] / sizes[new].sum()
        if old and ratio > 0:
            share = sizes[old] if old_task_weighting == "proportional" else torch.ones(len(old), dtype=torch.float64)
            weights[old] = ratio * share / share.sum()
        self.fixed = weights
        self.ratio, self.new_tasks, self.rehearse_tasks = float(ratio), new, old

    def probabilities(self, epoch, num_epochs):
        return self.fixed


def _indices(values: Sequence[int], count: int, name: str) -> list[int]:
    result = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not -count <= value < count:
            raise ValueError(f"`{name}` holds task indices in 0..{count - 1}; got {value!r}.")
        result.append(value % count)
    return sorted(set(result))
