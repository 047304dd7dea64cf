"""One text, several tasks, where only the top blocks depend on the task: the blocks below run once.

Under per-task LoRA on the top layers (the recipes' default), a row's states up to the first adapted block are the
same for every task. `fanned_out` repeats the batch there, once per task (task-major: copy k holds rows
`k * batch ... (k + 1) * batch - 1`), so one encoder call returns every task's encoding of every row for the cost of
the shared blocks once and the task-specific ones per task. The predictor and the `multi-task` pipeline use it when a
text is asked for several tasks (where `SharingScheme.fan_out_cost` says it pays).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn


class FanOutUnsupported(RuntimeError):
    """A block takes a batch-shaped input `fanned_out` does not know how to repeat: encode per task instead."""


#: Backbones whose blocks take `(hidden_states [rows, width, hidden], attention_mask, ...)`, batch first. Others are
#: encoded per task: XLNet, for one, runs its blocks sequence first, where a batch as long as its rows would pass
#: every shape check and be repeated along the wrong dimension.
FAN_OUT_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert", "deberta",
                                 "deberta-v2"})

#: Block inputs known to be batch-shaped: the hidden states (first argument) and the attention mask (second argument
#: in BERT, RoBERTa, DistilBERT and their relatives, or by name). Any other tensor input stops the fan-out, since a
#: tensor whose first size merely equals the batch (e.g. a `[query, key]` relative-position table) must not be copied.
_MASK_NAMES = ("attention_mask",)


@contextlib.contextmanager
def fanned_out(blocks: nn.ModuleList, start: int, copies: int, batch: int):
    """Inside, an encoder call on `batch` rows repeats them `copies` times on entering `blocks[start]`; every later
    block gets its attention mask repeated the same way. Raises `FanOutUnsupported` from the call if a block takes
    another tensor input whose first dimension is the batch."""

    def repeat(value: torch.Tensor) -> torch.Tensor:
        return value.repeat(copies, *([1] * (value.dim() - 1)))

    def expand(value: Any, name: str, is_mask: bool) -> Any:
        if isinstance(value, (tuple, list)):
            return type(value)(expand(item, name, False) for item in value)
        if not torch.is_tensor(value) or value.dim() == 0 or value.shape[0] == 1:
            return value  # no batch dimension, or one that broadcasts
        if value.shape[0] == batch and is_mask:
            return repeat(value)
        raise FanOutUnsupported(f"block input {name!r} of shape {tuple(value.shape)} is not known to be batch-shaped")

    def hook_for(index: int):
        def hook(module, args, kwargs):
            args = list(args)
            if index == start:
                hidden = args[0] if args else kwargs.get("hidden_states")
                if not torch.is_tensor(hidden) or hidden.shape[0] != batch:
                    raise FanOutUnsupported("the first fanned block did not receive the hidden states first")
                if args:
                    args[0] = repeat(hidden)
                else:
                    kwargs["hidden_states"] = repeat(hidden)
            for position in range(1, len(args)):
                args[position] = expand(args[position], f"argument {position}", is_mask=position == 1)
            for name, value in kwargs.items():
                if name != "hidden_states":
                    kwargs[name] = expand(value, name, is_mask=name in _MASK_NAMES)
            return tuple(args), kwargs

        return hook

    handles = [blocks[index].register_forward_pre_hook(hook_for(index), with_kwargs=True)
               for index in range(start, len(blocks))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def relative_block_passes(start: int, num_blocks: int, copies: int) -> float:
    """Block passes of a fanned-out call per row, relative to one full encoder pass: the shared blocks once, the rest
    once per copy."""
    return (start + copies * (num_blocks - start)) / num_blocks
