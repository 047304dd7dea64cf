"""The options of `sharing="mmoe"` / `"ple"` and their validation, apart from the scheme so the config can be read
and checked without the layers or the forward pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any


EXPERT_TYPES = {
    "layer": "copies of the top `num_expert_layers` transformer layers",
    "ffn": "residual feed-forward blocks on the encoder's output",
}


@dataclass
class MMoEOptions:
    num_experts: int = field(default=3, metadata={"help": "Shared experts that every task's gate mixes (>= 1)."})
    expert_type: str = field(
        default="layer",
        metadata={"help": "'layer' (copies of the top transformer layers) or 'ffn' (feed-forward blocks on the encoder output)."},
    )
    num_expert_layers: int = field(
        default=1, metadata={"help": "expert_type='layer': how many of the top transformer layers each expert copies."}
    )
    ffn_hidden_size: int | None = field(
        default=None, metadata={"help": "expert_type='ffn': inner width of each expert (default: the encoder's hidden size)."}
    )


@dataclass
class PLEOptions(MMoEOptions):
    num_task_experts: int = field(default=1, metadata={"help": "Experts of each task, seen by that task's gate only (>= 1)."})


def check_expert_options(scheme: str, options: MMoEOptions, config) -> MMoEOptions:
    """Validate the options of scheme `scheme` ("mmoe" or "ple") against the config's backbone."""
    _positive_int(scheme, "num_experts", options.num_experts, "the number of shared experts")
    if options.expert_type not in EXPERT_TYPES:
        close = get_close_matches(str(options.expert_type), EXPERT_TYPES, n=1)
        raise ValueError(
            f"Unknown expert_type {options.expert_type!r} for sharing={scheme!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + ". Choose one of: " + "; ".join(f"{k!r} ({v})" for k, v in EXPERT_TYPES.items()) + "."
        )
    num_layers = getattr(config.encoder, "num_hidden_layers", None)
    _positive_int(scheme, "num_expert_layers", options.num_expert_layers, "top transformer layers each expert copies")
    if num_layers is not None and options.num_expert_layers > num_layers:
        raise ValueError(
            f"num_expert_layers={options.num_expert_layers} but the backbone has {num_layers} layers: use 1..{num_layers}."
        )
    if options.ffn_hidden_size is not None:
        _positive_int(scheme, "ffn_hidden_size", options.ffn_hidden_size, "the width of a feed-forward expert")
    if hasattr(options, "num_task_experts"):
        _positive_int(scheme, "num_task_experts", options.num_task_experts, "experts per task (0 is sharing='mmoe')")
    return options


def _positive_int(scheme: str, key: str, value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"sharing={scheme!r} `{key}` ({what}) must be an integer >= 1, got {value!r}.")
