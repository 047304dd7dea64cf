"""Less padding through the encoder: a batch split into length-sorted parts, each cut to its own longest row.

A batch of random rows is padded to its longest row, and the encoder pays for every padded position. Run as a few
parts of rows sorted by length, each part trimmed to its own longest row, the encoder sees fewer positions for the
same rows: the attention mask already hides the padding, so every row's states (and so the loss and its gradient)
are those of the padded pass, up to float rounding. Padded positions cut off a part come back as zeros instead of
states computed from padding; the heads and pooling never read padded positions. Parts cost a call each, so a batch
is split only where the positions saved outweigh that (`plan_length_buckets`).

This is the CPU/eager form of "padding-free" training (TRL's `padding_free` flattens rows into one sequence, which
needs varlen attention kernels).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutput


#: What one more encoder call costs, in positions (rows x width) of forward + backward. A straight line fitted to MiniLM
#: timings over shapes gives about 40 (12 ms a call, 0.33 ms a position, 2 CPU threads), but small calls also use the
#: cores less well: on dev-suite batches, 2 parts planned with 160 ran fastest of 40, 80 and 160 (182 against 253 ms of
#: forward + backward for whole batches). Row 7 of `benchmarks` measures the saving in training.
CALL_COST_POSITIONS = 160


def attended_lengths(attention_mask: torch.Tensor) -> torch.Tensor:
    """Per row, one past its last attended position (the width the row needs; `0` for an empty row)."""
    width = attention_mask.shape[1]
    positions = torch.arange(1, width + 1, device=attention_mask.device)
    return (attention_mask.ne(0) * positions).amax(dim=1)


def plan_length_buckets(lengths: list[int], max_buckets: int, call_cost: int | None = None) -> list[list[int]]:
    """Rows grouped into at most `max_buckets` parts of neighbouring lengths, minimising the positions the encoder
    sees plus `call_cost` per part (so a batch of similar rows stays whole). Returns row indices per part, shortest
    part first; `[all rows]` when splitting does not pay. `call_cost` defaults to `CALL_COST_POSITIONS`."""
    if call_cost is None:
        call_cost = CALL_COST_POSITIONS
    order = sorted(range(len(lengths)), key=lambda row: lengths[row])
    sorted_lengths = [max(lengths[row], 1) for row in order]
    n = len(order)
    if max_buckets <= 1 or n < 2:
        return [order]
    # cost[k][j]: best cost of the first j sorted rows in k parts; a part (i, j] costs (j - i) * its longest row.
    infinity = float("inf")
    cost = [[infinity] * (n + 1) for _ in range(max_buckets + 1)]
    cut = [[0] * (n + 1) for _ in range(max_buckets + 1)]
    cost[0][0] = 0
    for k in range(1, max_buckets + 1):
        for j in range(1, n + 1):
            for i in range(k - 1, j):
                value = cost[k - 1][i] + (j - i) * sorted_lengths[j - 1] + call_cost
                if value < cost[k][j]:
                    cost[k][j], cut[k][j] = value, i
    best = min(range(1, max_buckets + 1), key=lambda k: cost[k][n])
    bounds, j = [], n
    for k in range(best, 0, -1):
        bounds.append((cut[k][j], j))
        j = cut[k][j]
    return [order[i:j] for i, j in reversed(bounds)]


def encoder_is_sharded(encoder: nn.Module) -> bool:
    """Whether the encoder's weights are sharded across processes (FSDP2 DTensors, DeepSpeed ZeRO-3): each call then
    gathers them collectively, so every process must make the same number of calls and a batch may not be split."""
    parameter = next(encoder.parameters(), None)
    return parameter is not None and (type(parameter).__name__ == "DTensor" or hasattr(parameter, "ds_id"))


def _checkpointing(encoder: nn.Module) -> bool:
    # transformers >= 5.24 calls it activation checkpointing (the old name warns); earlier 5.x only has the old name.
    if hasattr(type(encoder), "is_activation_checkpointing"):
        return bool(encoder.is_activation_checkpointing)
    return bool(getattr(encoder, "is_gradient_checkpointing", False))


def _tracing() -> bool:
    # The plan reads the lengths on the host: a traced or exported graph would freeze one batch's plan.
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


_PADDING_FREE_IN_EVAL: ContextVar[bool] = ContextVar("padding_free_in_eval", default=False)


@contextmanager
def padding_free_in_eval() -> Iterator[None]:
    """Within it, eval-mode encoder calls may run packed or length-sorted as training calls do. For loops that read
    only the real positions' outputs of a frozen encoder, e.g. the heads' refinement stage
    (`hf_mtl.training.refinement`); evaluation and prediction keep one padded call."""
    token = _PADDING_FREE_IN_EVAL.set(True)
    try:
        yield
    finally:
        _PADDING_FREE_IN_EVAL.reset(token)


def needs_one_padded_call(encoder: nn.Module, encoder_inputs: dict[str, Any]) -> bool:
    """Whether the batch must run as one padded call, however its rows could be split or packed: outside training
    mode (in eval mode every output, padded positions included, is that of one call, as exported models give it;
    unless inside `padding_free_in_eval`), without a 2-D attention mask, when per-layer outputs are requested (their
    padded positions would differ) and while tracing (`torch.export`, ONNX, `torch.compile`)."""
    mask = encoder_inputs.get("attention_mask")
    return (
        not (encoder.training or _PADDING_FREE_IN_EVAL.get())
        or mask is None
        or mask.dim() != 2
        or bool(encoder_inputs.get("output_hidden_states"))
        or bool(encoder_inputs.get("output_attentions"))
        or _tracing()
    )


def run_encoder_in_length_buckets(encoder: nn.Module, encoder_inputs: dict[str, Any], max_buckets: int) -> Any:
    """`encoder(**encoder_inputs)`, run as length-sorted parts when that saves positions (see the module docstring).

    Only where the batch need not be one padded call (`needs_one_padded_call`; in training mode, where the speed
    matters and padded positions are never read), and not when the encoder's weights are sharded or under gradient
    checkpointing (reentrant checkpoints of several calls would report a parameter's gradient twice to DDP)."""
    if (
        max_buckets <= 1
        or needs_one_padded_call(encoder, encoder_inputs)
        or encoder_is_sharded(encoder)
        or _checkpointing(encoder)
    ):
        return encoder(**encoder_inputs)
    mask = encoder_inputs["attention_mask"]
    batch_size, width = mask.shape
    lengths = attended_lengths(mask).tolist()
    buckets = plan_length_buckets(lengths, max_buckets)
    if len(buckets) == 1:
        if max(lengths) >= width:
            return encoder(**encoder_inputs)
        return BaseModelOutput(last_hidden_state=_encode_part(encoder, encoder_inputs, None, max(lengths), batch_size, width))
    pieces, order = [], []
    for rows in buckets:
        index = torch.tensor(rows, dtype=torch.long, device=mask.device)
        pieces.append(_encode_part(encoder, encoder_inputs, index, max(lengths[row] for row in rows), batch_size, width))
        order.extend(rows)
    inverse = torch.empty(batch_size, dtype=torch.long, device=mask.device)
    inverse[torch.tensor(order, dtype=torch.long, device=mask.device)] = torch.arange(batch_size, device=mask.device)
    return BaseModelOutput(last_hidden_state=torch.cat(pieces).index_select(0, inverse))


def _encode_part(encoder: nn.Module, inputs: dict[str, Any], rows: torch.Tensor | None, longest: int, batch_size: int,
                 width: int) -> torch.Tensor:
    """The last hidden states of some rows (all when `rows` is None), run cut to their longest row and padded back to
    `width` with zeros."""
    part_width = max(longest, 1)
    hidden = encoder(**_rows_and_width(inputs, rows, part_width, batch_size, width)).last_hidden_state
    return F.pad(hidden, (0, 0, 0, width - part_width))


def _rows_and_width(inputs: dict[str, Any], rows: torch.Tensor | None, part_width: int, batch_size: int, width: int):
    """The inputs of some rows (all when `rows` is None), cut to `part_width` positions."""
    part = {}
    for name, value in inputs.items():
        if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == batch_size:
            if rows is not None:
                value = value.index_select(0, rows)
            if value.dim() > 1 and value.shape[1] == width:
                value = value[:, :part_width]
        part[name] = value
    return part
