"""Checks of a model call's tensors, so a bad batch fails with what is wrong and how to fix it instead of an index
error deep inside the encoder (or, on a GPU, a device-side assert)."""

from __future__ import annotations

import torch
from transformers.utils import logging

from ..errors import HfMtlError, LabelError
from .encoder_settings import max_positions


logger = logging.get_logger(__name__)


class InputError(HfMtlError):
    """A model input has the wrong type, dtype, shape or values (e.g. token ids outside the vocabulary)."""


def check_model_inputs(model, input_ids, attention_mask, inputs_embeds, labels) -> None:
    """Validate what `MultiTaskModel.forward` receives, before the encoder runs."""
    if input_ids is not None:
        if not isinstance(input_ids, torch.Tensor):
            raise InputError(
                f"`input_ids` must be a torch.Tensor, got {type(input_ids).__name__}: tokenise with "
                "`return_tensors='pt'` or batch with `MultiTaskCollator`."
            )
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool or input_ids.is_complex():
            raise InputError(f"`input_ids` must hold integer token ids (torch.long), got dtype {input_ids.dtype}.")
    reference = input_ids if input_ids is not None else inputs_embeds
    if reference is not None and (reference.dim() == 0 or reference.shape[0] == 0):
        raise InputError(f"Empty batch: inputs of shape {tuple(reference.shape)}; a batch needs at least one row.")
    # Value checks read the data (min / max): not while torch.export or torch.compile traces a graph.
    if input_ids is not None and input_ids.numel() and not torch.compiler.is_compiling():
        vocab = getattr(model.get_input_embeddings(), "num_embeddings", None)
        low, high = int(input_ids.min()), int(input_ids.max())
        if vocab is not None and (low < 0 or high >= vocab):
            bad = low if low < 0 else high
            raise InputError(
                f"Token id {bad} is outside the encoder's vocabulary (ids 0..{vocab - 1}): the tokenizer does not "
                "belong to this model. Use the backbone's own tokenizer, or `model.resize_token_embeddings(len(tokenizer))`."
            )
    if reference is not None:
        seq_len = reference.shape[-1] if input_ids is not None else reference.shape[-2]
        positions = max_positions(model.config.encoder)
        if positions is not None and seq_len > positions:
            raise InputError(
                f"Sequences of {seq_len} tokens exceed the encoder's {positions} position embeddings: truncate them "
                f"(`truncation=True, max_length={positions}`, or `max_seq_length` in the training arguments)."
            )
        shape = reference.shape if input_ids is not None else reference.shape[:-1]
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(shape):
            raise InputError(
                f"`attention_mask` has shape {tuple(attention_mask.shape)} but the inputs have {tuple(shape)}; pad "
                "them together (the tokenizer's `padding=True`, or `MultiTaskCollator`)."
            )
    if labels is not None and not isinstance(labels, torch.Tensor):
        raise LabelError(
            f"`labels` must be a torch.Tensor, got {type(labels).__name__}; map label names to ids with the task's "
            "`label2id` and batch with `MultiTaskCollator`."
        )


def check_tokenizer_fits_model(tokenizer, model, max_length: int) -> int:
    """Fail before any work when the tokenizer can produce ids the model cannot embed; returns the sequence length
    to tokenise to: `max_length`, lowered (with a warning, as Transformers' example scripts do) to the encoder's
    position embeddings when it exceeds them."""
    embeddings = model.get_input_embeddings()
    vocab = getattr(embeddings, "num_embeddings", None)
    if tokenizer is not None and vocab is not None and len(tokenizer) > vocab:
        raise InputError(
            f"The tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab} (encoder vocab_size): "
            "they do not belong together. Load the tokenizer of the model's backbone "
            "(`AutoTokenizer.from_pretrained(<same path>)`), or after adding tokens call "
            "`model.resize_token_embeddings(len(tokenizer))`."
        )
    positions = max_positions(model.config.encoder)
    if positions is not None and max_length > positions:
        logger.warning(
            f"max_seq_length={max_length} exceeds the encoder's {positions} position embeddings; "
            f"tokenising to {positions} tokens instead."
        )
        return positions
    return max_length


def check_names_every_task(mapping, task_names, what: str, error=ValueError) -> None:
    """`mapping` must name each of `task_names` exactly once: otherwise `error` naming the unknown and missing
    tasks and listing the model's (`what` says which setting, e.g. "sampling='fixed' `probabilities`")."""
    unknown = sorted(set(mapping) - set(task_names))
    missing = [name for name in task_names if name not in mapping]
    if unknown or missing:
        raise error(
            f"{what} must name every task exactly once: "
            + (f"unknown task(s) {unknown}; " if unknown else "") + (f"missing task(s) {missing}; " if missing else "")
            + f"the tasks are {', '.join(task_names) or '(none)'}."
        )
