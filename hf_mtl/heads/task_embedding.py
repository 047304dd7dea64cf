"""Task conditioning of the shared encoder: a learned vector per task added to the input embedding of the first
token (`[CLS]`), as tasknet does (Sileo 2023), so every layer of the shared encoder knows which task a row is for.

It starts at zero (the model then computes exactly what the backbone computes) and is saved with the model as
`task_embedding.weight`; at inference the task of each row (`task=` or `task_ids`) selects its vector.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


TASK_EMBEDDING_CHOICES = ("none", "cls")


class TaskEmbedding(nn.Module):
    """`weight[t]` is added to the first position of the word embeddings of every row of task `t`."""

    def __init__(self, num_tasks: int, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max(num_tasks, 1), hidden_size))

    def condition(self, word_embeddings: nn.Module, encoder_inputs: dict[str, Any], task_ids: torch.Tensor) -> dict:
        """The encoder inputs with `inputs_embeds` (word embeddings + the task vector at position 0) instead of
        `input_ids`; position and token-type embeddings are still added by the encoder."""
        inputs = dict(encoder_inputs)
        embeds = inputs.pop("inputs_embeds", None)
        input_ids = inputs.pop("input_ids", None)
        if embeds is None:
            embeds = word_embeddings(input_ids)
        offset = torch.zeros_like(embeds)
        offset[:, 0] = self.weight[task_ids].to(embeds.dtype)
        inputs["inputs_embeds"] = embeds + offset
        return inputs

    def resize(self, keep_rows: list[int | None]) -> None:
        """Keep the vectors of the surviving tasks in their new order; new tasks (`None`) start at zero."""
        old = self.weight.data
        new = torch.zeros(max(len(keep_rows), 1), old.shape[1], device=old.device, dtype=old.dtype)
        for new_row, old_row in enumerate(keep_rows):
            if old_row is not None:
                new[new_row] = old[old_row]
        self.weight = nn.Parameter(new, requires_grad=self.weight.requires_grad)

    def extra_repr(self) -> str:
        return f"num_tasks={self.weight.shape[0]}, hidden_size={self.weight.shape[1]}"
