"""The wrapper that lets each row execute or skip a transformer layer, and the context that hands every wrapped layer
its decisions for one encoder call. The layers only apply decisions; the scheme's policy makes them."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..base import slice_rows


class SkippableLayer(nn.Module):
    """A transformer layer that each row executes or skips; the scheme sets `decision` around each encoder call:
    `("soft", d)` with `d` `[rows]` in {0, 1} carrying gradients (search), or `("rows", indices)` of the rows that
    execute it (every other case; the layer runs on those rows only)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.decision: tuple[str, torch.Tensor] | None = None
        self.record = False
        self.recorded: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, hidden_states, *args, **kwargs):
        if self.decision is None:
            raise RuntimeError("This layer is skipped per task (sharing='adashare'): call the MultiTaskModel, not its encoder alone.")
        kind, value = self.decision
        batch_size = hidden_states.shape[0]
        if kind == "soft":
            out = _first(self.block(hidden_states, *args, **kwargs))
            result = hidden_states + value.to(out.dtype).view(-1, *([1] * (out.dim() - 1))) * (out - hidden_states)
        elif value.numel() == 0:
            result = hidden_states
        elif value.numel() == batch_size:
            result = _first(self.block(hidden_states, *args, **kwargs))
        else:
            sub_args = [slice_rows(v, value, batch_size) for v in args]
            sub_kwargs = {k: slice_rows(v, value, batch_size) for k, v in kwargs.items()}
            out = _first(self.block(slice_rows(hidden_states, value, batch_size), *sub_args, **sub_kwargs))
            result = hidden_states.index_copy(0, value, out.to(hidden_states.dtype))
        if self.record:
            self.recorded = (hidden_states, result)
        return result


@contextlib.contextmanager
def applied_decisions(layers: list[SkippableLayer], decisions, record: bool):
    """Give each layer its decision (and whether to record its input and output) for the duration of the block."""
    for layer, decision in zip(layers, decisions):
        layer.decision, layer.record = decision, record
    try:
        yield
    finally:
        for layer in layers:
            layer.decision, layer.record, layer.recorded = None, False, None


def _first(output):
    if isinstance(output, tuple):
        raise TypeError("sharing='adashare' needs transformer layers that return a tensor (BERT-family models in Transformers 5).")
    return output
