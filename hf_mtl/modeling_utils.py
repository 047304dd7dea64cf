"""Helpers of `MultiTaskModel` that are not the model's own job (as transformers' `modeling_utils.py`): building the
shared encoder, loading a plain backbone's weights into it, and checking an hf_mtl checkpoint against its config.

They take the model as a `PreTrainedModel` (it is a `MultiTaskModel`) so that this module never imports
`modeling_multitask`: the model imports its helpers, not the other way round.
"""

from __future__ import annotations

import inspect

from transformers import AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.utils import logging

from .errors import CheckpointError


logger = logging.get_logger(__name__)


def build_encoder(encoder_config: PreTrainedConfig) -> PreTrainedModel:
    """The shared backbone, without its pooler where the architecture has one: heads pool for themselves."""
    if getattr(encoder_config, "is_encoder_decoder", False):
        raise ValueError(
            f"Backbone type {encoder_config.model_type!r} is an encoder-decoder model; hf_mtl shares an encoder-only "
            "backbone (BERT, RoBERTa, DeBERTa, ELECTRA, DistilBERT, ...): choose one of those."
        )
    model_class = AutoModel._model_mapping[type(encoder_config)]
    kwargs = {}
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        kwargs["add_pooling_layer"] = False
    return AutoModel.from_config(encoder_config, **kwargs)


def load_backbone_weights(
    model: PreTrainedModel, backbone: PreTrainedModel, info: dict, source, strict: bool
) -> dict[str, list[str]]:
    """Copy a plain backbone's weights into `model`'s encoder (`MultiTaskModel.from_backbone`) and report what did not
    fit: every encoder weight left random is a warning (or a `CheckpointError` with `strict`), since a silently random
    layer only shows as a bad score after training. `info` is `AutoModel.from_pretrained`'s loading info of
    `backbone`; returns the loading info of the multi-task model (`missing_keys`, `unexpected_keys`,
    `new_head_keys`, `new_sharing_keys`).
    """
    # The sharing scheme maps the backbone's keys onto the (possibly adapted) encoder: LoRA-wrapped layers keep
    # their weights under `base_layer`, hierarchical copies start from the backbone's upper layers.
    backbone_state = backbone.state_dict()
    encoder_state, new_sharing_keys = model.sharing.map_backbone_state_dict(model, backbone_state)
    used = {model.sharing.backbone_key(key) for key in encoder_state}
    result = model.encoder.load_state_dict(encoder_state, strict=False)
    missing = sorted(
        set(info.get("missing_keys", ())) | {k for k in result.missing_keys if f"encoder.{k}" not in new_sharing_keys}
    )
    unexpected = sorted(set(info.get("unexpected_keys", ())) | (set(backbone_state) - used))
    new_heads = [f"heads.{name}.{key}" for name, head in model.heads.items() for key in head.state_dict()]
    if missing:
        message = (
            f"{len(missing)} encoder weight(s) were NOT found in {source!r} and are "
            f"randomly initialised: {', '.join('encoder.' + key for key in missing)}."
        )
        if strict:
            raise CheckpointError(message + " Check that the checkpoint is a backbone of this architecture.")
        logger.warning(message + " Train before use, or pass a checkpoint that holds them.")
    if unexpected:
        logger.info(
            f"Checkpoint weights not used by the encoder (e.g. a pooler or an MLM head): {', '.join(unexpected)}."
        )
    logger.info(f"New task heads (train them): {', '.join(model.heads)}.")
    if new_sharing_keys:
        logger.info(f"New task-specific parameters of sharing={model.config.sharing!r}: {len(new_sharing_keys)} tensors.")
    return {
        "missing_keys": missing,
        "unexpected_keys": unexpected,
        "new_head_keys": new_heads,
        "new_sharing_keys": new_sharing_keys,
    }


def check_checkpoint_matches(model: PreTrainedModel, info: dict, source, allow_resize: bool) -> None:
    """Raise when an hf_mtl checkpoint's weights disagree with its config: a head, adapter, private encoder or
    upper-layer copy too many or too few, encoder weights missing, or a resized weight.

    `model` is the loaded `MultiTaskModel` (typed on its base class so this module stays below the model's); `info` is
    `from_pretrained`'s loading info, taken with `ignore_mismatched_sizes=True` so that size mismatches land here and
    are reported with the task they belong to.
    """
    missing = list(info.get("missing_keys") or [])
    unexpected = list(info.get("unexpected_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    head_missing = sorted({key.split(".")[1] for key in missing if key.startswith("heads.")})
    head_unexpected = sorted({key.split(".")[1] for key in unexpected if key.startswith("heads.")})
    loaded_head_keys = {key for key in model.state_dict() if key.startswith("heads.")} - set(missing)
    checkpoint_has_heads = bool(head_unexpected or loaded_head_keys)
    sharing = model.sharing
    body = ("encoder.", "sharing.")
    unit_missing = sorted({sharing.parameter_owner(k)[1] for k in missing if sharing.parameter_owner(k)})
    unit_unexpected = sorted({sharing.parameter_owner(k)[1] for k in unexpected if sharing.parameter_owner(k)})
    encoder_missing = [k for k in missing if k.startswith(body) and not sharing.parameter_owner(k)]
    encoder_unexpected = [k for k in unexpected if k.startswith(body) and not sharing.parameter_owner(k)]
    if not checkpoint_has_heads and (encoder_missing or unit_missing):
        # A plain backbone loaded into an adapted encoder: LoRA base weights would stay random (`base_layer` keys),
        # adapters would not be the identity, copies would not start from the backbone.
        raise CheckpointError(
            f"{str(source)!r} holds no task heads and lacks weights this sharing={model.config.sharing!r} model needs "
            f"(e.g. {(encoder_missing or [k for k in missing if sharing.parameter_owner(k)])[:3]}): it looks like a plain "
            "backbone checkpoint. Build the model with `MultiTaskModel.from_backbone(path, tasks, config_kwargs="
            f"{{'sharing': {model.config.sharing!r}, ...}})`, which maps the backbone's weights into the adapted encoder."
        )
    problems = []
    if head_unexpected:
        problems.append(f"heads in the weights but not in the config: {head_unexpected}")
    if head_missing and checkpoint_has_heads:
        problems.append(f"heads in the config but not in the weights: {head_missing}")
    if unit_unexpected:
        problems.append(f"{sharing.unit_label}(s) in the weights but not in the config: {unit_unexpected}")
    if unit_missing:
        problems.append(f"{sharing.unit_label}(s) in the config but not in the weights: {unit_missing}")
    if encoder_missing and checkpoint_has_heads:
        problems.append(f"encoder weights missing from the checkpoint: {_some(encoder_missing)}")
    if encoder_unexpected and checkpoint_has_heads:
        problems.append(
            f"encoder weights in the checkpoint that the config's sharing={model.config.sharing!r} does not have "
            f"(saved with another sharing scheme?): {_some(encoder_unexpected)}"
        )
    if mismatched and not allow_resize:
        names = sorted({str(entry[0] if isinstance(entry, (tuple, list)) else entry) for entry in mismatched})
        problems.append(
            f"weights whose shapes differ from the config (e.g. a head's label count changed): {names[:6]}"
            " (pass `ignore_mismatched_sizes=True` to re-initialise them on purpose)"
        )
    if problems:
        raise CheckpointError(
            f"The checkpoint {str(source)!r} does not match its config: " + "; ".join(problems) + ". "
            "Re-save the model with `save_pretrained` (which writes both together), or load the config that "
            "belongs to these weights."
        )
    if head_missing and not checkpoint_has_heads:
        logger.warning(
            f"{str(source)!r} holds no task heads; heads {head_missing} are newly initialised. To start from a "
            "backbone checkpoint, `MultiTaskModel.from_backbone` reports exactly what it loaded."
        )


def _some(keys: list[str], limit: int = 5) -> str:
    return f"{keys[:limit]}{' ...' if len(keys) > limit else ''}"


def describe_trainable_parameters(model) -> str:
    """Trainable parameters in total and per task (what training each task updates), in peft's wording."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines = [f"sharing={model.config.sharing!r}: trainable params: {trainable:,} || all params: {total:,} || "
             f"trainable%: {100 * trainable / max(total, 1):.4f}"]
    for task, count in model.task_parameter_counts().items():
        lines.append(f"  {task}: {count['trainable']:,} trainable ({count['trainable_task_specific']:,} task-specific + "
                     f"{count['shared_trainable']:,} shared)")
    return "\n".join(lines)
