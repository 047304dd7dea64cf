"""Inter-task affinity during training (Fifty et al., NeurIPS 2021, "Efficiently Identifying Task Groupings for
Multi-Task Learning", TAG, arXiv:2109.04617) and the task groups it suggests.

Every `task_affinity_steps` optimizer steps, `TaskAffinityCallback` (`hf_mtl.training.callbacks.affinity`) takes one batch per task and, for each task i,
makes a lookahead SGD step on the *shared* parameters with task i's loss, then measures every task j's loss:

    z_{i->j} = 1 - L_j(theta_s - lr * grad_{theta_s} L_i, theta_j) / L_j(theta_s, theta_j)

z_{i->j} > 0: a step on task i lowers task j's loss (i helps j); < 0: it raises it (i conflicts with j). The exact
parameters are restored after each lookahead, the trainer's gradients are not touched, and the batches come from
the callback's own seeded generator, so training is the same as without the measurement. Lookaheads run in eval
mode (no dropout), so differences come from the step alone. The matrix is averaged over the run and written to the
output directory: `task_affinity.json` (updated after every measurement, so nothing is lost if training stops) and,
at the end, `task_affinity.png` (heat-map) and the suggested groups, usable as hierarchical-sharing `groups`.

Grouping (`suggest_groups`): TAG selects groups maximising the total affinity each task receives from its group.
Hierarchical sharing needs a partition (each task in exactly one group), so the search is over partitions: the score
of a partition is sum over tasks j of the mean z_{i->j} over the other members i of j's group (0 alone); ties go to
fewer groups. Exhaustive for up to 10 tasks (115,975 partitions at most); beyond, greedy merging of the pair of
groups that gains most.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.utils import logging


logger = logging.get_logger(__name__)

AFFINITY_JSON = "task_affinity.json"
AFFINITY_PNG = "task_affinity.png"
EXHAUSTIVE_LIMIT = 10


def lookahead_affinity(model, batches: dict[str, dict[str, Any]], task_names: Sequence[str], lr: float) -> np.ndarray:
    """z[i, j] = 1 - L_j(after an SGD step of size `lr` on task i's loss, shared parameters only) / L_j(before).

    `batches[task]` is a one-task batch (with labels) for `model(**batch)`. Parameters and mode are restored.
    """
    shared = [p for _, p in model.shared_parameters()]
    saved = [p.detach().clone() for p in shared]
    was_training = model.training
    model.eval()
    names = list(task_names)
    matrix = np.zeros((len(names), len(names)))
    try:
        with torch.no_grad():
            before = {task: _loss(model, batches[task]) for task in names}
        for i, task in enumerate(names):
            with torch.enable_grad():
                loss = model(**batches[task]).loss
                grads = torch.autograd.grad(loss, shared, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(shared, grads):
                    if g is not None:
                        p.sub_(lr * g)
                for j, other in enumerate(names):
                    matrix[i, j] = 1.0 - _loss(model, batches[other]) / max(before[other], 1e-12)
                for p, value in zip(shared, saved):
                    p.copy_(value)
    finally:
        with torch.no_grad():
            for p, value in zip(shared, saved):
                p.copy_(value)
        model.train(was_training)
    return matrix


def _loss(model, batch) -> float:
    return float(model(**batch).loss)


# ---------------------------------------------------------------------- grouping


def _partitions(items: list[int]):
    """Every set partition of `items` (restricted growth strings), deterministic order."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _partitions(rest):
        for k in range(len(partition)):
            yield partition[:k] + [[first] + partition[k]] + partition[k + 1 :]
        yield [[first]] + partition


def partition_score(matrix: np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    """Sum over tasks j of the mean affinity z[i, j] onto j from the other members i of j's group (0 alone)."""
    score = 0.0
    for group in groups:
        if len(group) < 2:
            continue
        for j in group:
            score += sum(matrix[i, j] for i in group if i != j) / (len(group) - 1)
    return score


def suggest_groups(matrix, num_groups: int | None = None, task_names: Sequence[str] | None = None) -> list[list]:
    """Partition the tasks into groups that help each other most (see the module docstring).

    Args:
        matrix (`array-like` of shape `[K, K]`): affinities `z[i][j]` (i helps j when positive).
        num_groups (`int`, *optional*): exactly this many groups; `None` picks the best number.
        task_names (`list[str]`, *optional*): returns names instead of indices.

    Returns:
        `list[list]` of task names (or indices), ready for `sharing_kwargs={"groups": ...}` of hierarchical sharing.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"The affinity matrix must be square [K, K], got shape {matrix.shape}.")
    k = matrix.shape[0]
    if task_names is not None and len(task_names) != k:
        raise ValueError(f"{len(task_names)} task names for a {k}x{k} affinity matrix.")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("The affinity matrix holds NaN or infinite values: measure again (e.g. a lower task_affinity_lr).")
    if num_groups is not None and not 1 <= num_groups <= max(k, 1):
        raise ValueError(f"num_groups must be between 1 and the number of tasks ({k}), got {num_groups}.")
    if k <= EXHAUSTIVE_LIMIT:
        best, best_score = None, -np.inf
        for partition in _partitions(list(range(k))):
            if num_groups is not None and len(partition) != num_groups:
                continue
            score = partition_score(matrix, partition)
            # Ties go to fewer groups: as much sharing (and as small a model) as the affinities allow.
            if score > best_score + 1e-12 or (score > best_score - 1e-12 and len(partition) < len(best)):
                best, best_score = partition, score
        groups = best or []
    else:
        groups = _greedy_groups(matrix, num_groups)
    groups = sorted((sorted(group) for group in groups), key=lambda group: group[0])
    return [[task_names[i] for i in group] for group in groups] if task_names is not None else groups


def _greedy_groups(matrix: np.ndarray, num_groups: int | None) -> list[list[int]]:
    groups = [[i] for i in range(matrix.shape[0])]
    while len(groups) > 1 and (num_groups is None or len(groups) > num_groups):
        base = partition_score(matrix, groups)
        best_gain, best_pair = -np.inf, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                merged = [g for n, g in enumerate(groups) if n not in (a, b)] + [groups[a] + groups[b]]
                gain = partition_score(matrix, merged) - base
                if gain > best_gain:
                    best_gain, best_pair = gain, (a, b)
        if num_groups is None and best_gain < -1e-12:
            break
        a, b = best_pair
        groups = [g for n, g in enumerate(groups) if n not in (a, b)] + [groups[a] + groups[b]]
    return groups


# ---------------------------------------------------------------------- plot


def plot_affinity(matrix, task_names: Sequence[str], path: str, num_measurements: int | None = None) -> str:
    """Heat-map of `z[i][j]` (rows: the task stepped on; columns: the task whose loss changes), centred on 0.

    The colour scale covers the off-diagonal entries (how tasks affect *each other*); the diagonal (a task's effect
    on itself, usually far larger) is shown in grey with its value.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    matrix = np.asarray(matrix, dtype=float)
    k = len(task_names)
    off_diagonal = ~np.eye(k, dtype=bool)
    limit = float(np.abs(matrix[off_diagonal]).max()) if k > 1 else 0.0
    limit = limit or float(np.abs(matrix).max()) or 1.0
    fig, ax = plt.subplots(figsize=(1.3 * k + 2.5, 1.0 * k + 2))
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#d9d9d9")
    shown = np.ma.masked_array(matrix, mask=~off_diagonal)
    image = ax.imshow(shown, cmap=cmap, norm=TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit))
    ax.set_xticks(range(k), labels=task_names, rotation=45, ha="right")
    ax.set_yticks(range(k), labels=task_names)
    ax.set_xlabel("task whose loss changes (j)")
    ax.set_ylabel("lookahead step on task (i)")
    for i in range(k):
        for j in range(k):
            value = matrix[i, j]
            color = "dimgray" if i == j else ("white" if abs(value) > 0.6 * limit else "black")
            ax.text(j, i, f"{value:.2g}", ha="center", va="center", color=color, fontsize=9)
    title = "Inter-task affinity z(i→j) (TAG): blue helps, red hurts"
    if num_measurements:
        title += f"\nmean of {num_measurements} measurement(s); diagonal (self) in grey"
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_affinity(path: str) -> dict[str, Any]:
    """Read `task_affinity.json` (or the run directory that holds it)."""
    if os.path.isdir(path):
        path = os.path.join(path, AFFINITY_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No task affinity file at {path!r}. Train with `task_affinity_steps=N` (N > 0), which writes "
            f"{AFFINITY_JSON} into the output directory."
        )
    with open(path) as handle:
        data = json.load(handle)
    missing = [key for key in ("tasks", "affinity") if key not in data]
    if missing:
        raise ValueError(f"{path!r} is not a task affinity file: it lacks {missing}.")
    return data
