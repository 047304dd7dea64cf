"""No padding through the encoder: a batch's rows packed end to end into a few lines, attention kept within each row.

A batch of random rows is padded to its longest row, and the encoder pays for every padded position. Packed, the rows
sit side by side in lines as wide as the longest row (first fit, longest rows first), each row with its own position
ids (counted from its own start, as in the padded batch) and a block-diagonal attention mask, so a row attends only
to itself: every row's states, and so the loss and its gradient, are those of the padded call up to float rounding,
from one encoder call over about the batch's real tokens. (Dev-suite mixed batches: 300 positions a step against 634
padded, or 410 with two length-sorted calls; forward + backward 0.70x of the two calls.) The states come back in the
padded layout, zeros at padded positions, which the heads and pooling never read.

This is the eager / SDPA form of "padding-free" training: TRL's `padding_free` flattens a batch into one sequence
and relies on FlashAttention's variable-length kernels, which CPUs and the eager and SDPA attention lack; lines with a
block-diagonal mask need neither. Packing needs an encoder whose rows are independent given their position ids and
mask: BERT-style absolute position embeddings and eager or SDPA attention (`packed_position_start`); others fall
back to length-sorted calls (`hf_mtl.sharing.length_buckets`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from .length_buckets import encoder_is_sharded


#: How a scheme routes the rows of one encoder call by key (a task's adapter, a group's layers):
#: `routing(keys, unpack)` is entered around the call, with one key per row of the batch the encoder sees (per packed
#: line when packed) and `unpack`, which maps a `[rows, width, hidden]` tensor of that call back to the padded batch.
Routing = Callable[[list[str], Callable[[torch.Tensor], torch.Tensor]], AbstractContextManager]

#: A scheme that can route each position on its own (per-task LoRA, whose update is per token): `routing(position_keys,
#: unpack)` with `position_keys` a LongTensor `[rows, width]` of the call, each position's key as an index into the
#: distinct keys in order of first appearance (`key_indices`). Packed lines then mix keys as under hard sharing.
PositionRouting = Callable[[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]], AbstractContextManager]


def key_indices(keys: list[str], device: torch.device | str | None = None) -> tuple[list[str], torch.Tensor]:
    """The distinct keys in order of first appearance, and each row's key as an index into them."""
    names = list(dict.fromkeys(keys))
    return names, torch.tensor([names.index(key) for key in keys], dtype=torch.long, device=device)

#: Encoders known to take packed rows, and the position id of a row's first token. BERT-like models count from 0;
#: RoBERTa-like models from `pad_token_id + 1` (what their embeddings derive from `input_ids`). Each is checked by
#: `tests/test_row_packing.py` against one padded call.
POSITION_START = {
    "bert": lambda config: 0,
    "electra": lambda config: 0,
    "roberta": lambda config: config.pad_token_id + 1,
    "xlm-roberta": lambda config: config.pad_token_id + 1,
}
PACKABLE_ATTENTION = ("eager", "sdpa")


def packed_position_start(encoder: nn.Module) -> int | None:
    """The position id of a row's first token if `encoder` can run packed rows, else None: a model type of
    `POSITION_START` with absolute position embeddings, eager or SDPA attention, and `position_ids` in its forward."""
    config = getattr(encoder, "config", None)
    start = POSITION_START.get(getattr(config, "model_type", None))
    if start is None or getattr(config, "_attn_implementation", None) not in PACKABLE_ATTENTION:
        return None
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    if not _forward_takes_position_ids(type(encoder)):
        return None
    if config._attn_implementation == "eager" and encoder_is_sharded(encoder):
        # Eager attention adds a float mask, which must be in the dtype the scores are computed in: the weights'
        # dtype, except under FSDP / ZeRO mixed precision, which casts them inside the call.
        return None
    return start(config)


@functools.cache
def _forward_takes_position_ids(encoder_class: type) -> bool:
    # Once per class: the signature does not change between steps.
    return "position_ids" in inspect.signature(encoder_class.forward).parameters


def pack_rows(lengths: list[int], keys: list[str] | None = None) -> list[list[int]]:
    """Rows (indices) per line: first fit, longest rows first, into lines as wide as the longest row. Each line's
    rows are in the order they were placed; every row is in exactly one line. With `keys` (one per row), a line
    holds rows of one key only (lines of the first key first), so a scheme can route whole lines (a task's adapter,
    a group's layers)."""
    width = max(lengths, default=0)
    if keys is None:
        return _first_fit(lengths, width)
    if len(keys) != len(lengths):
        raise ValueError(f"pack_rows got {len(keys)} keys for {len(lengths)} rows: pass one key per row.")
    lines = []
    for key in dict.fromkeys(keys):
        rows = [row for row, row_key in enumerate(keys) if row_key == key]
        lines.extend([[rows[i] for i in line] for line in _first_fit([lengths[row] for row in rows], width)])
    return lines


def _first_fit(lengths: list[int], width: int) -> list[list[int]]:
    lines: list[list[int]] = []
    room: list[int] = []
    for row in sorted(range(len(lengths)), key=lambda row: -lengths[row]):
        for line, free in enumerate(room):
            if lengths[row] <= free:
                lines[line].append(row)
                room[line] -= lengths[row]
                break
        else:
            lines.append([row])
            room.append(width - lengths[row])
    return lines


class PackedBatch:
    """Where every row's positions go in the packed lines: `source` (flat indices into the padded `[batch, width]`
    positions) is copied to `target` (flat indices into `[lines, line_width]`); `segment` numbers the rows of each
    line (-1 at a line's unused end). With `keys` (one per row) every line holds rows of one key, `line_keys`."""

    def __init__(self, lengths: list[int], width: int, device: torch.device, keys: list[str] | None = None):
        self.batch_size, self.width = len(lengths), width
        lines = pack_rows(lengths, keys)
        self.line_keys = [keys[line[0]] for line in lines] if keys is not None else None
        self.num_lines, self.line_width = len(lines), max(max(lengths), 1)
        source, target, segment, offsets = [], [], [-1] * (self.num_lines * self.line_width), []
        for line, rows in enumerate(lines):
            start = line * self.line_width
            for number, row in enumerate(rows):
                source.extend(range(row * width, row * width + lengths[row]))
                target.extend(range(start, start + lengths[row]))
                segment[start : start + lengths[row]] = [number] * lengths[row]
                offsets.extend(range(lengths[row]))
                start += lengths[row]
        self.source = torch.tensor(source, dtype=torch.long, device=device)
        self.target = torch.tensor(target, dtype=torch.long, device=device)
        self.offsets = torch.tensor(offsets, dtype=torch.long, device=device)  # each position's place in its row
        self.segment = torch.tensor(segment, dtype=torch.long, device=device).view(self.num_lines, self.line_width)

    def pack(self, value: torch.Tensor, fill: int | float = 0) -> torch.Tensor:
        """A per-position tensor `[batch, width, ...]` as lines `[lines, line_width, ...]` (`fill` where no row is)."""
        flat = value.reshape(self.batch_size * self.width, *value.shape[2:]).index_select(0, self.source)
        lines = flat.new_full((self.num_lines * self.line_width, *value.shape[2:]), fill)
        return lines.index_copy(0, self.target, flat).view(self.num_lines, self.line_width, *value.shape[2:])

    def unpack(self, states: torch.Tensor) -> torch.Tensor:
        """Line states `[lines, line_width, hidden]` back to `[batch, width, hidden]`, zeros at padded positions."""
        flat = states.reshape(self.num_lines * self.line_width, -1).index_select(0, self.target)
        rows = flat.new_zeros(self.batch_size * self.width, flat.shape[-1])
        return rows.index_copy(0, self.source, flat).view(self.batch_size, self.width, -1)

    def attention_mask(self, attention: str, dtype: torch.dtype) -> torch.Tensor:
        """`[lines, 1, line_width, line_width]`: a position attends to the positions of its own row. An unused
        position attends to itself only (a query with nothing to attend to would make the softmax NaN). Boolean for
        SDPA (True = attend), additive (0 / dtype's minimum) for eager attention, as Transformers builds them."""
        segment = self.segment
        allowed = (segment[:, :, None] == segment[:, None, :]) & (segment[:, None, :] >= 0)
        allowed |= torch.eye(self.line_width, dtype=torch.bool, device=segment.device)
        allowed = allowed[:, None]
        if attention == "sdpa":
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=segment.device).masked_fill_(~allowed, torch.finfo(dtype).min)


def run_encoder_packed(
    encoder: nn.Module,
    encoder_inputs: dict[str, Any],
    lengths: list[int],
    position_start: int,
    keys: list[str] | None = None,
    routing: Routing | PositionRouting | None = None,
    by_position: bool = False,
) -> Any:
    """`encoder(**encoder_inputs)` with the batch's rows packed into lines (see the module docstring); `lengths` are
    the rows' attended lengths (each row's mask is ones up to its length, zeros after). Returns the last hidden states
    in the padded layout. With `keys` and `routing`, lines hold rows of one key and the encoder call runs inside
    `routing(line_keys, unpack)` (see `Routing`); with `by_position`, lines mix keys and the call runs inside
    `routing(position_keys, unpack)` (see `PositionRouting`; unused positions get key 0)."""
    mask = encoder_inputs["attention_mask"]
    batch_size, width = mask.shape
    packed = PackedBatch(lengths, width, mask.device, None if by_position else keys)
    inputs: dict[str, Any] = {}
    for name, value in encoder_inputs.items():
        if name == "attention_mask" or value is None:
            continue
        if torch.is_tensor(value) and value.dim() > 1 and value.shape[:2] == (batch_size, width):
            value = packed.pack(value)
        inputs[name] = value
    if encoder_inputs.get("position_ids") is None:
        positions = torch.full((packed.num_lines * packed.line_width,), position_start, dtype=torch.long, device=mask.device)
        positions.index_copy_(0, packed.target, packed.offsets + position_start)
        inputs["position_ids"] = positions.view(packed.num_lines, packed.line_width)
    dtype = encoder.get_input_embeddings().weight.dtype  # under autocast the scores' dtype may differ: matmul casts
    inputs["attention_mask"] = packed.attention_mask(encoder.config._attn_implementation, dtype)
    if routing is None:
        context = contextlib.nullcontext()
    elif by_position:
        row_keys = key_indices(keys, mask.device)[1]
        context = routing(packed.pack(row_keys[:, None].expand(batch_size, width)), packed.unpack)
    else:
        context = routing(packed.line_keys, packed.unpack)
    with context:
        hidden = encoder(**inputs).last_hidden_state
    return BaseModelOutput(last_hidden_state=packed.unpack(hidden))
