"""What `MultiTaskModel.forward` returns, apart from the model (as transformers keeps `modeling_outputs.py`): code that
only reads outputs (trainer, predictor, exporters) does not need the model's module to name their type."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class MultiTaskModelOutput(ModelOutput):
    r"""
    Output of [`MultiTaskModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Mean of the per-task losses weighted by each task's number of rows in the batch (for a one-task batch,
            that task's loss). Trainers that weight tasks use `task_losses` instead.
        logits (`torch.FloatTensor`, *optional*):
            The head's output when the batch holds a single task (`task=` call, or `task_ids` with one value):
            `[batch, num_labels]`, `[batch]` for regression, `[batch, seq_len, num_labels]` for token
            classification, `[batch, num_choices]` for multiple choice. `None` for a mixed batch.
        task_logits (`dict[str, torch.FloatTensor]`):
            Logits of each task present in the batch, for its rows in batch order.
        task_indices (`dict[str, torch.LongTensor]`):
            Row indices (into the batch) of each task present in the batch.
        task_losses (`dict[str, torch.FloatTensor]`, *optional*, returned when `labels` is given):
            Unweighted mean loss of each task present in the batch.
        auxiliary_losses (`dict[str, torch.FloatTensor]`, *optional*, returned in training mode):
            Losses that are not tasks, e.g. `"adversarial"` (task discriminator). They are not part of `loss`: the
            trainer adds them with their weights from the training arguments.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            The encoder's hidden states, when `output_hidden_states=True`.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            The encoder's attention weights, when `output_attentions=True`.
        head_inputs (`torch.FloatTensor` of shape `[batch, seq_len, hidden]`, *optional*, returned in training mode
            with `labels`):
            The hidden states the heads read (the shared representation), kept in the graph so a task-balancing
            strategy can measure each task's gradient there (`weighting="rep_norm"`).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    task_logits: dict[str, torch.FloatTensor] | None = None
    task_indices: dict[str, torch.LongTensor] | None = None
    task_losses: dict[str, torch.FloatTensor] | None = None
    auxiliary_losses: dict[str, torch.FloatTensor] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    head_inputs: torch.FloatTensor | None = None
