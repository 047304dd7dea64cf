"""The experts as modules: a residual feed-forward expert (`expert_type="ffn"`) and the module that takes the place
of the top transformer layers (`expert_type="layer"`). They hold weights and run them; which expert a row uses and
with what weight is the scheme's gates' job (`ExpertMixtureLayer` calls back into `scheme.mix`)."""

from __future__ import annotations

import torch
from torch import nn

from ..base import slice_rows


class FeedForwardExpert(nn.Module):
    """`h + W2 gelu(W1 h)`; `W2` starts at zero (see `reset_to_identity`)."""

    def __init__(self, hidden_size: int, inner_size: int, dropout: float):
        super().__init__()
        self.dense_in = nn.Linear(hidden_size, inner_size)
        self.dense_out = nn.Linear(inner_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def reset_to_identity(self) -> None:
        with torch.no_grad():
            self.dense_out.weight.zero_()
            self.dense_out.bias.zero_()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.dropout(self.dense_out(nn.functional.gelu(self.dense_in(hidden_states))))


class ExpertMixtureLayer(nn.Module):
    """Takes the place of the top transformer layers (expert_type='layer'): runs each expert's stack of layer copies
    on the rows that need it and returns the gated mixture. The scheme sets `context` around each encoder call."""

    def __init__(self, shared: list[nn.ModuleList], per_task: dict[str, list[nn.ModuleList]]):
        super().__init__()
        self.shared_experts = nn.ModuleList(shared)
        self.task_experts = nn.ModuleDict({task: nn.ModuleList(stacks) for task, stacks in per_task.items()})
        self.context: tuple | None = None
        self.last_input: torch.Tensor | None = None
        self.last_levels: tuple[torch.Tensor, ...] = ()

    def forward(self, hidden_states, *args, **kwargs):
        if self.context is None:
            raise RuntimeError("These layers are gated experts (sharing='mmoe'/'ple'): call the MultiTaskModel, not its encoder alone.")
        scheme, names, task_ids, mask, all_levels = self.context
        batch_size = hidden_states.shape[0]
        self.last_input = hidden_states
        raw_output = []

        def run(key, rows):
            stack = self.shared_experts[key[1]] if key[0] == "shared" else self.task_experts[key[1]][key[2]]
            h, a, kw = hidden_states, args, kwargs
            if rows is not None:
                h = slice_rows(h, rows, batch_size)
                a = [slice_rows(v, rows, batch_size) for v in args]
                kw = {k: slice_rows(v, rows, batch_size) for k, v in kwargs.items()}
            levels = []
            for layer in stack:
                out = layer(h, *a, **kw)
                if not raw_output:
                    raw_output.append(out)
                h = out[0] if isinstance(out, tuple) else out
                levels.append(h)
            return torch.stack(levels if all_levels else levels[-1:], dim=-1)

        mixed = scheme.mix(names, hidden_states, task_ids, mask, run)  # [rows, seq, hidden, levels]
        self.last_levels = mixed.unbind(-1)
        output = self.last_levels[-1]
        if isinstance(raw_output[0], tuple):  # older layer classes return tuples: keep the encoder's indexing right
            return (output, *raw_output[0][1:])
        return output
