"""The steps of `MultiTaskModel.forward` around the encoder, in the order it takes them: which task each row is, the
encoder's output back on the input's positions, each task's head on its rows, and heads scored on rows of other tasks
(joint labels).

Free functions that take what they need (config, heads, tensors), so the model's module keeps building and running the
model and this one the bookkeeping of rows and tasks.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import TaskError
from .tasks import input_group_leaders


if TYPE_CHECKING:
    from .configuration_multitask import MultiTaskConfig
    from .heads.task_embedding import TaskPrefix
    from .sharing import EncodedBatch


def resolve_tasks(
    config: MultiTaskConfig,
    heads: nn.ModuleDict,
    task: str | None,
    task_ids: torch.Tensor | None,
    reference: torch.Tensor,
) -> tuple[torch.LongTensor, str | None]:
    """Per-row task ids, and the task name when the whole batch is one task (`task=`, or `task_ids` with one value):
    a one-task batch skips the per-task gather and may be multiple choice, which cannot be mixed."""
    if (task is None) == (task_ids is None):
        raise TaskError(
            "Pass exactly one of `task` (the task name of every row) and `task_ids` (a task index per row); got "
            + ("both." if task is not None else "neither.")
            + f" Tasks of this model: {', '.join(config.task_names) or '(none)'}."
        )
    batch_size = reference.shape[0]
    if task is not None:
        if not isinstance(task, str):
            raise TaskError(f"`task` is a task name (str), got {type(task).__name__}: {task!r}. Use `task_ids` for per-row ids.")
        index = config.task_index(task)
        return torch.full((batch_size,), index, dtype=torch.long, device=reference.device), task
    task_ids = torch.as_tensor(task_ids, device=reference.device)
    if task_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TaskError(f"`task_ids` must hold integer task indices, got dtype {task_ids.dtype}.")
    if task_ids.shape != (batch_size,):
        raise TaskError(f"`task_ids` must have shape ({batch_size},) (one task index per row), got {tuple(task_ids.shape)}.")
    task_ids = task_ids.long()
    num_tasks = len(config.task_names)
    if task_ids.numel() and (task_ids.min() < 0 or task_ids.max() >= num_tasks):
        bad = task_ids[(task_ids < 0) | (task_ids >= num_tasks)][0].item()
        raise TaskError(
            f"Task id {bad} is out of range: this model has {num_tasks} task(s), ids 0..{num_tasks - 1} "
            f"({', '.join(f'{i}={n}' for i, n in enumerate(config.task_names))})."
        )
    present = torch.unique(task_ids).tolist()
    if len(present) == 1:
        return task_ids, config.task_names[present[0]]
    unmixable = [config.task_names[i] for i in present if not heads[config.task_names[i]].mixable]
    if unmixable:
        raise TaskError(
            f"Task(s) {unmixable} cannot share a mixed-task batch (their inputs are [batch, num_choices, seq_len]); "
            "batch them on their own with `task=`."
        )
    return task_ids, None


def encoder_rows(heads: nn.ModuleDict, single_task: str | None, input_shape: torch.Size, encoder_inputs: dict,
                 task_ids: torch.LongTensor) -> tuple[dict, torch.LongTensor]:
    """The encoder's inputs (those given) and one task id per encoder row: multiple choice flattens `[batch,
    num_choices, seq_len]` to `[batch * num_choices, seq_len]`; every other task takes `[batch, seq_len]` as it is."""
    if single_task is not None and not heads[single_task].mixable:
        if len(input_shape) != 3:
            raise ValueError(
                f"Task {single_task!r} is {heads[single_task].task_type!r}: inputs must be "
                f"[batch, num_choices, seq_len], got {tuple(input_shape)}."
            )
        flat = {key: value.flatten(0, 1) for key, value in encoder_inputs.items() if value is not None}
        return flat, task_ids.repeat_interleave(input_shape[1])
    if len(input_shape) != 2:
        raise ValueError(f"Expected inputs of shape [batch, seq_len], got {tuple(input_shape)}.")
    return {key: value for key, value in encoder_inputs.items() if value is not None}, task_ids


def to_group_leaders(config: MultiTaskConfig, task_ids: torch.LongTensor) -> torch.LongTensor:
    """Encoder task ids with every member of an `input_group` as its group's leader (`input_group_leaders`): the
    encoder path its rows were trained on. Unchanged (the same tensor) without groups."""
    if not any(task.get("input_group") for task in config.tasks):  # every forward: no spec objects when none
        return task_ids
    specs = config.task_specs
    leaders = input_group_leaders(specs)
    index = {spec.name: i for i, spec in enumerate(specs)}
    table = torch.tensor([index[leaders[spec.name]] for spec in specs], device=task_ids.device)
    return table[task_ids]


def strip_task_prefix(task_prefix: TaskPrefix, encoded: EncodedBatch) -> EncodedBatch:
    """The encoder's outputs without the positions `task_embedding="prefix"` inserted: the heads, their masks and the
    caller's `hidden_states` / `attentions` all count positions of the input."""
    strip = task_prefix.strip
    outputs = encoded.encoder_outputs
    if outputs is not None and getattr(outputs, "hidden_states", None) is not None:
        outputs.hidden_states = tuple(strip(states) for states in outputs.hidden_states)
    if outputs is not None and getattr(outputs, "attentions", None) is not None:  # [batch, heads, query, key]
        outputs.attentions = tuple(strip(strip(a, dim=2), dim=3) for a in outputs.attentions)
    return dataclasses.replace(
        encoded, hidden_states=strip(encoded.hidden_states), shared_hidden_states=strip(encoded.shared_hidden_states)
    )


def score_task_heads(
    config: MultiTaskConfig, heads: nn.ModuleDict, hidden, mask, task_ids, single_task, input_shape, labels,
    labels_are_padded
) -> tuple[dict[str, torch.Tensor], dict[str, torch.LongTensor], dict[str, torch.Tensor]]:
    """Each task present in the batch scored by its head on its rows: `task_logits`, `task_indices` (rows into the
    batch) and `task_losses` (when `labels` is given), keyed by task name in task-id order.

    A one-task batch (`single_task`) runs its head on the whole batch, with no gather, and keeps the head's own input
    shape (multiple choice). A mixed batch gathers each task's rows; with `labels_are_padded` (a `task_ids` call) every
    row's labels come right-padded to a common width, and the head cuts its own format back out of them.
    """
    task_logits, task_indices, task_losses = {}, {}, {}
    for index in [config.task_index(single_task)] if single_task else torch.unique(task_ids).tolist():
        name = config.task_names[index]
        head = heads[name]
        if single_task is not None:  # the whole batch: no gather needed
            rows = torch.arange(input_shape[0], device=hidden.device)
            head_hidden, head_mask, row_shape, row_labels = hidden, mask, input_shape, labels
        else:
            rows = (task_ids == index).nonzero(as_tuple=True)[0]
            head_hidden, head_mask = hidden[rows], (mask[rows] if mask is not None else None)
            row_shape = torch.Size((rows.numel(), *input_shape[1:]))
            row_labels = labels[rows] if labels is not None else None
        task_logits[name] = head(head_hidden, head_mask, rows.numel())
        task_indices[name] = rows
        if row_labels is not None:
            if labels_are_padded:
                row_labels = head.labels_from_padded(row_labels, row_shape)
            head.check_labels(row_labels, row_shape)
            task_losses[name] = head.compute_loss(task_logits[name], row_labels)
    return task_logits, task_indices, task_losses


def score_joint_head(
    config: MultiTaskConfig, heads: nn.ModuleDict, name, padded, task_ids, hidden, mask, input_shape, task_logits,
    task_indices, task_losses
) -> None:
    """Head `name` on the rows of the other tasks of its input group, with their `joint_labels` (same pass).

    Adds to (or merges into) `task_logits` / `task_indices` / `task_losses` in place, as the per-task heads fill them.
    """
    spec = config.task_spec(name)
    group = [i for i, s in enumerate(config.task_specs) if spec.input_group and s.input_group == spec.input_group]
    if not group:
        raise TaskError(f"joint_labels names {name!r}, which has no input_group: only tasks of one group share rows.")
    rows = torch.isin(task_ids, torch.tensor(group, device=task_ids.device)).nonzero(as_tuple=True)[0]
    if rows.numel() == 0:
        return
    head = heads[name]
    row_shape = torch.Size((rows.numel(), *input_shape[1:]))
    logits = head(hidden[rows], mask[rows] if mask is not None else None, rows.numel())
    labels = head.labels_from_padded(padded[rows], row_shape)
    head.check_labels(labels, row_shape)
    loss = head.compute_loss(logits, labels)
    if name in task_losses:  # the task also has rows of its own: one loss over all of its rows
        own = task_indices[name].numel()
        loss = (task_losses[name] * own + loss * rows.numel()) / (own + rows.numel())
        rows, logits = torch.cat([task_indices[name], rows]), torch.cat([task_logits[name], logits])
    task_losses[name], task_indices[name], task_logits[name] = loss, rows, logits
