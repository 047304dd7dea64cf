"""How a training batch goes through the shared encoder with the least padding: packed rows where the encoder can
take them (`row_packing`), else length-sorted calls (`length_buckets`), else one padded call.

Both give every row the states of one padded call, up to float rounding, so the choice changes speed, not the model.
Training mode only, and one padded call wherever `length_buckets.needs_one_padded_call` says so (eval mode, no 2-D
attention mask, per-layer outputs, tracing).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .length_buckets import attended_lengths, needs_one_padded_call, run_encoder_in_length_buckets
from .row_packing import PositionRouting, Routing, key_indices, packed_position_start, run_encoder_packed


def run_encoder_padding_free(
    encoder: nn.Module,
    encoder_inputs: dict[str, Any],
    packing: bool,
    max_buckets: int,
    row_keys: list[str] | None = None,
    routing: Routing | PositionRouting | None = None,
    by_position: bool = False,
) -> Any:
    """`encoder(**encoder_inputs)`, packed (`packing` and an encoder that takes packed rows), else in up to
    `max_buckets` length-sorted calls (see `run_encoder_in_length_buckets` for when it keeps the batch whole).

    With `routing` (and `row_keys`, one key per row), the scheme routes rows by key inside the encoder: packed lines
    then hold rows of one key (`Routing`), or mix keys when the scheme routes each position (`by_position`,
    `PositionRouting`), and where packing does not apply the batch runs as one padded call (length-sorted calls are
    not routed)."""

    def padded():
        if routing is None:
            return encoder(**encoder_inputs)
        if by_position:
            rows = key_indices(row_keys, encoder_inputs["attention_mask"].device)[1]
            context = routing(rows[:, None].expand(encoder_inputs["attention_mask"].shape), lambda states: states)
        else:
            context = routing(row_keys, lambda states: states)
        with context:
            return encoder(**encoder_inputs)

    def unpacked():
        if routing is not None:
            return padded()
        return run_encoder_in_length_buckets(encoder, encoder_inputs, max_buckets)

    if needs_one_padded_call(encoder, encoder_inputs):
        return padded()
    position_start = packed_position_start(encoder) if packing else None
    if position_start is None:
        return unpacked()
    mask = encoder_inputs["attention_mask"]
    if any(torch.is_tensor(value) and value.dim() > 0 and tuple(value.shape[:2]) != tuple(mask.shape)
           for name, value in encoder_inputs.items() if name != "attention_mask"):
        # An input broadcast over rows (e.g. position_ids of shape [1, width]) cannot be packed row by row.
        return unpacked()
    lengths, attended = torch.stack([attended_lengths(mask), mask.ne(0).sum(dim=1)]).tolist()  # one host sync
    if lengths != attended:  # a row with a gap or left padding: packing assumes each row's mask is ones, then zeros
        return unpacked()
    if min(lengths) == mask.shape[1]:  # nothing padded
        return padded()
    return run_encoder_packed(encoder, encoder_inputs, lengths, position_start, row_keys, routing, by_position)

