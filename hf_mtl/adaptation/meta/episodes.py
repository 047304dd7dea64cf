"""Few-shot episodes: a k-example support set and a disjoint query set drawn from one task's dataset.

Meta-training and few-shot evaluation draw their examples here, so "k shots" means the same thing in both:
`k` examples in total. For single-label tasks (sequence classification, multiple choice) the support set is
balanced over the labels present (round-robin over the classes in a random order), which is how few-shot NLP
benchmarks draw k-shot sets (e.g. Gao et al., ACL 2021, "Making Pre-trained Language Models Better Few-shot
Learners"); other task types draw uniformly. Support sets of one seed are nested: the 8 examples of the 8-shot set
are the first 8 of the 16-shot set, so a curve over k changes only the amount of data, not which data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from datasets import Dataset

from ...data import DataError
from ...tasks import TaskSpec


BALANCED_TYPES = ("sequence_classification", "multiple_choice")


def balanced_order(labels: Sequence[int] | None, size: int, generator: torch.Generator) -> list[int]:
    """A permutation of `range(size)` whose every prefix is as class-balanced as the data allows.

    Args:
        labels: one class id per row, or `None` for a plain random permutation.
        size: number of rows.
        generator: the source of randomness (the order is a function of its state).
    """
    if labels is None:
        return torch.randperm(size, generator=generator).tolist()
    by_class: dict[int, list[int]] = {}
    for row in torch.randperm(size, generator=generator).tolist():
        by_class.setdefault(int(labels[row]), []).append(row)
    classes = sorted(by_class)
    classes = [classes[i] for i in torch.randperm(len(classes), generator=generator).tolist()]
    order, depth = [], 0
    while len(order) < size:
        for label in classes:
            if depth < len(by_class[label]):
                order.append(by_class[label][depth])
        depth += 1
    return order


def balancing_labels(dataset: Dataset, task: TaskSpec) -> list[int] | None:
    """Class ids to balance k-shot sets on (tokenised `labels` column), or `None` for task types that have none."""
    if task.type not in BALANCED_TYPES or "labels" not in dataset.column_names:
        return None
    return [int(label) for label in dataset["labels"]]


@dataclass
class Episode:
    """Row indices into one task's tokenised dataset."""

    task: str
    support: list[int]
    query: list[int]


def sample_episode(
    dataset: Dataset,
    task: TaskSpec,
    k_shot: int,
    query_size: int,
    generator: torch.Generator,
    labels: list[int] | None = None,
) -> Episode:
    """Draw a `k_shot` support set (balanced for single-label tasks) and a disjoint `query_size` query set.

    Raises `DataError` when the task has fewer than `k_shot + query_size` rows.
    """
    size = len(dataset)
    if k_shot < 1 or query_size < 0:
        raise DataError(f"Episodes need k_shot >= 1 and query_size >= 0, got k_shot={k_shot}, query_size={query_size}.")
    if k_shot + query_size > size:
        raise DataError(
            f"Task {task.name!r} has {size} examples, fewer than an episode needs (k_shot={k_shot} + "
            f"query_size={query_size}). Lower k_shot/query_size or give the task more data."
        )
    if labels is None:
        labels = balancing_labels(dataset, task)
    order = balanced_order(labels, size, generator)
    support = order[:k_shot]
    rest = order[k_shot:]
    # The query set mirrors the task's own label distribution: a random subset of what the support did not take.
    picks = torch.randperm(len(rest), generator=generator)[:query_size].tolist()
    return Episode(task=task.name, support=support, query=[rest[i] for i in picks])
