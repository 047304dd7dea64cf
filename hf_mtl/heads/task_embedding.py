"""Task conditioning of the shared encoder, so every layer of the shared encoder knows which task a row is for.

- `cls` (`TaskEmbedding`): a learned vector per task added to the input embedding of the first token (`[CLS]`), as
  tasknet does (Sileo 2023). It starts at zero: the model then computes exactly what the backbone computes.
- `prefix` (`TaskPrefix`): `task_prefix_length` learned input vectors per task inserted right after `[CLS]` (a
  task token / prompt prefix, as in prompt tuning, Lester et al. 2021): more room to condition than one vector.
  Each prefix vector is the row's own `[CLS]` input plus a learned offset (zero at the start) and sits at `[CLS]`'s
  position, so at the start the prefix holds copies of `[CLS]` and the text keeps its positions. The prefix is
  removed from the encoder's output before the heads read it.

Both are saved with the model as `task_embedding.weight`; at inference the task of each row (`task=` or
`task_ids`) selects its vectors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


TASK_EMBEDDING_CHOICES = ("none", "cls", "prefix")


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
        new = torch.zeros(max(len(keep_rows), 1), *old.shape[1:], device=old.device, dtype=old.dtype)
        for new_row, old_row in enumerate(keep_rows):
            if old_row is not None:
                new[new_row] = old[old_row]
        self.weight = nn.Parameter(new, requires_grad=self.weight.requires_grad)

    def extra_repr(self) -> str:
        return f"num_tasks={self.weight.shape[0]}, hidden_size={self.weight.shape[-1]}"


class TaskPrefix(TaskEmbedding):
    """`weight[t, i]` (+ the row's `[CLS]` input embedding) is inserted as input position `1 + i` of every row of
    task `t`; `strip` removes those positions from the encoder's output."""

    def __init__(self, num_tasks: int, hidden_size: int, length: int):
        if length < 1:
            raise ValueError(f"task_prefix_length must be >= 1 (vectors per task), got {length}.")
        super().__init__(num_tasks, hidden_size)
        self.weight = nn.Parameter(torch.zeros(max(num_tasks, 1), length, hidden_size))

    @property
    def length(self) -> int:
        return self.weight.shape[1]

    def condition(self, word_embeddings: nn.Module, encoder_inputs: dict[str, Any], task_ids: torch.Tensor) -> dict:
        """The encoder inputs with the prefix inserted after `[CLS]`: `inputs_embeds`, and `attention_mask`,
        `token_type_ids` and `position_ids` widened to match (the prefix is attended to, has `[CLS]`'s token type
        and position; the text keeps its own positions)."""
        inputs = dict(encoder_inputs)
        embeds = inputs.pop("inputs_embeds", None)
        input_ids = inputs.pop("input_ids", None)
        if embeds is None:
            embeds = word_embeddings(input_ids)
        batch, seq_len = embeds.shape[:2]
        prefix = embeds[:, :1] + self.weight[task_ids].to(embeds.dtype)
        inputs["inputs_embeds"] = torch.cat([embeds[:, :1], prefix, embeds[:, 1:]], dim=1)
        positions = inputs.get("position_ids")
        if positions is None:
            positions = torch.arange(seq_len, device=embeds.device).expand(batch, seq_len)
        inputs["position_ids"] = self._widen(positions, positions[:, :1])
        mask = inputs.get("attention_mask")
        if mask is not None:
            if mask.dim() != 2:
                raise ValueError(
                    "task_embedding='prefix' widens a [batch, seq_len] attention_mask; got one of shape "
                    f"{tuple(mask.shape)}. Pass a 2-D mask or use task_embedding='cls'."
                )
            inputs["attention_mask"] = self._widen(mask, torch.ones_like(mask[:, :1]))
        token_types = inputs.get("token_type_ids")
        if token_types is not None:
            inputs["token_type_ids"] = self._widen(token_types, token_types[:, :1])
        return inputs

    def _widen(self, values: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        """`values` [batch, seq_len] with `fill` [batch, 1] repeated at the prefix positions."""
        values = values.expand(fill.shape[0], -1) if values.shape[0] == 1 else values
        return torch.cat([values[:, :1], fill.expand(-1, self.length), values[:, 1:]], dim=1)

    def strip(self, states: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The prefix positions removed along `dim` (the sequence axis): `seq_len + length` -> `seq_len`."""
        return torch.cat([states.narrow(dim, 0, 1), states.narrow(dim, 1 + self.length, states.shape[dim] - 1 - self.length)], dim=dim)

    def extra_repr(self) -> str:
        return f"num_tasks={self.weight.shape[0]}, length={self.length}, hidden_size={self.weight.shape[-1]}"


def build_task_embedding(kind: str, num_tasks: int, hidden_size: int, prefix_length: int) -> TaskEmbedding | None:
    """The module of `MultiTaskConfig.task_embedding` (`None` for `"none"`)."""
    if kind == "cls":
        return TaskEmbedding(num_tasks, hidden_size)
    if kind == "prefix":
        return TaskPrefix(num_tasks, hidden_size, prefix_length)
    return None
