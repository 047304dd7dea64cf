"""What every parameter-sharing scheme implements, and the helpers several schemes use.

A scheme decides which parameters the tasks share and how a batch runs through them. It is an `nn.Module` stored
as `model.sharing` (its own parameters, e.g. private encoders, save as `sharing.*`); task-specific parts that live
inside the backbone (LoRA adapters, per-group copies of upper layers) are injected into `model.encoder` by
`setup`, so `encoder.*` keys always describe the whole (possibly adapted) backbone.

Adding a scheme = one file (or a sub-package, like `experts/`) in `hf_mtl/sharing/` with a subclass registered in
`SHARING`, its options as a dataclass (`Options`, every field with `metadata={"help": ...}`), and one row in the registry test matrix.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from ..errors import TaskError
from ..utils.registry import Registry
from .padding_free import run_encoder_padding_free


if TYPE_CHECKING:
    from transformers import PreTrainedConfig

    from ..tasks import TaskSpec


class SharedConfig(Protocol):
    """What a sharing scheme reads of the model config (`MultiTaskConfig` satisfies it). The config validates
    `sharing_kwargs` with the scheme's `validate_options`, so the sharing layer sits below the configuration and knows
    it only through this protocol."""

    tasks: list[dict[str, Any]]
    encoder: PreTrainedConfig
    pooling: str
    sharing_kwargs: dict[str, Any]
    encoder_packing: bool
    encoder_length_buckets: int
    name_or_path: str

    @property
    def task_names(self) -> list[str]: ...

    def task_index(self, name: str) -> int: ...

    def task_spec(self, name: str) -> TaskSpec: ...


class SharedModel(Protocol):
    """What a sharing scheme uses of the model it serves (`MultiTaskModel` satisfies it): its config, its encoder and
    weight initialisation. Typing the hooks on this instead of `MultiTaskModel` keeps the sharing layer below the
    modeling layer, as peft's tuners take a plain `nn.Module`."""

    config: SharedConfig
    encoder: nn.Module
    training: bool

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, nn.Parameter]]: ...

    def _init_weights(self, module: nn.Module) -> None: ...


SHARING: Registry[type[SharingScheme]] = Registry("sharing scheme")


@dataclass
class EncodedBatch:
    """What the sharing scheme hands to the heads.

    Args:
        hidden_states: token states the heads read, `[rows, seq_len, head_hidden_size]`.
        shared_hidden_states: token states of the shared encoder alone (the discriminator's input).
        encoder_outputs: the shared encoder's raw output (hidden states / attentions when asked for).
        auxiliary_losses: losses the scheme itself defines (e.g. an orthogonality penalty).
    """

    hidden_states: torch.Tensor
    shared_hidden_states: torch.Tensor
    encoder_outputs: Any = None
    auxiliary_losses: dict[str, torch.Tensor] | None = None


@dataclass
class NoOptions:
    """Schemes without options."""


class SharingScheme(nn.Module):
    """Base class of the sharing schemes.

    Subclasses set `name` and `Options` and override what differs from hard sharing. Methods receive the model
    instead of holding it (a module attribute would register the encoder twice in the state dict).

    The one notion every generic feature builds on is `parameter_owner(name)`: the task-specific *unit* a parameter
    belongs to (`("adapter", "ner")`, `("group", "sentence")`, ...), or `None` when every task shares it. From it
    follow `shared_parameters` (gradient surgery, task affinity), per-task parameter counts, checkpoint checks and the
    keys `from_backbone` reports as new.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    #: Human-readable name of a unit, for messages ("LoRA adapter", "private encoder", ...).
    unit_label: ClassVar[str] = ""
    #: Whether a row's encoding depends on its task (adapters, private encoders, gates, policies). When it does not,
    #: one encoder pass serves every task of a text (the predictor and the pipeline use this).
    encodes_per_task: ClassVar[bool] = True

    def __init__(self, config: SharedConfig):
        super().__init__()
        self.options = self.Options(**(config.sharing_kwargs or {}))

    # ------------------------------------------------------------------ options

    @classmethod
    def validate_options(cls, options: dict[str, Any] | None, config: SharedConfig) -> dict[str, Any]:
        """Check the `sharing_kwargs` of a config; returns them normalised, with every default filled in.

        Unknown keys fail with the valid ones; `check_options` adds the scheme's own checks.
        """
        options = dict(options or {})
        fields = {f.name for f in dataclasses.fields(cls.Options)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ValueError(
                f"Unknown sharing_kwargs {unknown} for sharing={cls.name!r}. "
                + (f"Valid keys: {', '.join(sorted(fields))}." if fields else "This scheme takes no options.")
            )
        try:
            parsed = cls.Options(**options)
        except TypeError as error:  # a required field is missing
            raise ValueError(f"sharing={cls.name!r}: {error}. {cls.options_help()}") from None
        parsed = cls.check_options(parsed, config)
        return dataclasses.asdict(parsed)

    @classmethod
    def check_options(cls, options, config: SharedConfig):
        """Scheme-specific validation and normalisation (raise `ValueError` / `TaskError` naming the fix)."""
        return options

    @classmethod
    def options_help(cls) -> str:
        parts = [f"{f.name}: {f.metadata.get('help', '')}" for f in dataclasses.fields(cls.Options)]
        return "Options: " + "; ".join(parts) if parts else ""

    # ------------------------------------------------------------------ building

    def setup(self, model: SharedModel) -> None:
        """Called once `model.encoder` exists, before the heads are built: inject task-specific parts."""

    def after_init(self, model: SharedModel) -> None:
        """Called after `post_init` (which re-initialises every module the backbone's `_init_weights` reaches)."""

    def head_hidden_size(self, config: SharedConfig) -> int:
        return config.encoder.hidden_size

    # ------------------------------------------------------------------ parameters

    def parameter_owner(self, name: str) -> tuple[str, str] | None:
        """`(kind, unit)` of a task-specific parameter (full name in the model), `None` for shared ones."""
        return None

    def task_units(self, task: str) -> set[str]:
        """Units (see `parameter_owner`) a task runs through."""
        return set()

    def backbone_key(self, name: str) -> str | None:
        """Key in a plain backbone checkpoint that initialises encoder parameter `name` (a key of `model.encoder`),
        or `None` when the parameter is new (a LoRA matrix)."""
        return name

    def shared_parameters(self, model: SharedModel) -> list[tuple[str, nn.Parameter]]:
        """Trainable parameters of the encoder (and of the scheme) that no single task owns."""
        return [
            (name, p)
            for name, p in model.named_parameters()
            if p.requires_grad and name.startswith(("encoder.", "sharing.")) and self.parameter_owner(name) is None
        ]

    def task_parameters(self, model: SharedModel, task: str) -> list[tuple[str, nn.Parameter]]:
        """Parameters of `task`'s head and of the units it runs through (see `MultiTaskModel.task_parameters`), and the
        task embedding, whose rows are per task."""
        model.config.task_index(task)
        units = self.task_units(task)
        return [
            (name, p)
            for name, p in model.named_parameters()
            if name.startswith((f"heads.{task}.", "task_embedding.")) or (self.parameter_owner(name) or (None, None))[1] in units
        ]

    def task_parameter_counts(self, model: SharedModel) -> dict[str, dict[str, int]]:
        shared = count_parameters(p for _, p in self.shared_parameters(model))
        counts = {}
        for task in model.config.task_names:
            own = [p for _, p in self.task_parameters(model, task)]
            trainable_own = count_parameters(p for p in own if p.requires_grad)
            counts[task] = {
                "task_specific": count_parameters(own),
                "trainable_task_specific": trainable_own,
                "shared_trainable": shared,
                "trainable": trainable_own + shared,
            }
        return counts

    def map_backbone_state_dict(
        self, model: SharedModel, backbone_state: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], list[str]]:
        """The weights of a plain backbone checkpoint keyed for `model.encoder` (via `backbone_key`), and the full
        names of the parameters no backbone holds (new LoRA matrices, private encoders)."""
        encoder_state, new_keys = {}, []
        for key in model.encoder.state_dict():
            source = self.backbone_key(key)
            if source is None:
                new_keys.append(f"encoder.{key}")
            elif source in backbone_state:
                encoder_state[key] = backbone_state[source]
        return encoder_state, new_keys + [f"sharing.{key}" for key in self.state_dict()]

    # ------------------------------------------------------------------ tasks

    def add_task(self, model: SharedModel, spec: TaskSpec, init_from: str | None, group: str | None) -> None:
        """Build the new task's units (the task is already in `model.config.tasks`)."""
        if group is not None:
            raise TaskError(f"`group=` only applies to sharing='hierarchical'; this model uses sharing={self.name!r}.")

    def remove_task(self, model: SharedModel, name: str) -> None:
        """Drop the task's units (the task is already gone from `model.config.tasks`)."""

    # ------------------------------------------------------------------ training (learned sharing)
    # Schemes that learn how to share (gates, layer policies) hook into training through these; the trainer calls
    # them (see `hf_mtl.sharing.training.SharingCallback`). The defaults do nothing.

    def auxiliary_loss_weights(self) -> dict[str, float]:
        """`{name: weight}` of the scheme's own `auxiliary_losses` that the trainer adds to the loss with that weight."""
        return {}

    def optimizer_parameter_groups(self, model: SharedModel) -> list[dict[str, Any]]:
        """Optimizer groups (`{"params", "lr" or "lr_multiplier", "weight_decay"}`) for parameters that need their own
        learning rate or no weight decay (e.g. AdaShare's policy logits); the trainer takes them out of its default
        groups. `lr_multiplier` is relative to the trainer's learning rate."""
        return []

    def on_step_begin(self, model: SharedModel, step: int, max_steps: int) -> None:
        """Before optimizer step `step` (0-based) of `max_steps`: anneal temperatures, end a search phase."""

    def training_logs(self) -> dict[str, float]:
        """Values to add to the trainer's training logs (e.g. mean gate weights since the previous log)."""
        return {}

    def on_train_end(self, model: SharedModel, output_dir: str, write: bool) -> list[str]:
        """At the end of training on every process (`write` on the one that saves): fix what was learned, write
        plots into `output_dir`. Returns the paths written."""
        return []

    # ------------------------------------------------------------------ forward

    def encode(self, model: SharedModel, task_ids: torch.LongTensor, encoder_inputs: dict[str, Any]) -> EncodedBatch:
        encoder_outputs = run_encoder_padding_free(
            model.encoder, encoder_inputs, model.config.encoder_packing, model.config.encoder_length_buckets
        )
        hidden = encoder_outputs.last_hidden_state
        return EncodedBatch(hidden_states=hidden, shared_hidden_states=hidden, encoder_outputs=encoder_outputs)

    def fan_out_cost(self, model: SharedModel, tasks: list[str]) -> float | None:
        """Encoder cost per row of `encode_tasks` for `tasks`, relative to one encoder pass (see `sharing.fan_out`);
        None where the scheme cannot encode a row for several tasks in one call."""
        return None

    def encode_tasks(self, model: SharedModel, encoder_inputs: dict[str, Any], tasks: list[str]) -> dict[str, torch.Tensor] | None:
        """Every task's token states of the same rows, `{task: [rows, seq_len, hidden]}`, in one encoder call; None
        where that does not work out (then encode per task). Only for schemes whose `fan_out_cost` is not None."""
        return None


# ---------------------------------------------------------------------- helpers


def slice_rows(value: Any, rows: torch.LongTensor, batch_size: int) -> Any:
    """Rows of a per-row tensor; anything else (a broadcast mask, None, a flag) unchanged."""
    if torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == batch_size:
        return value.index_select(0, rows.to(value.device))
    return value


def rows_by_key(row_keys: list[str], device) -> list[tuple[str, torch.LongTensor]]:
    """The rows of each key (a task, a group), keys in order of first appearance."""
    order: dict[str, list[int]] = {}
    for row, key in enumerate(row_keys):
        order.setdefault(key, []).append(row)
    return [(key, torch.tensor(rows, dtype=torch.long, device=device)) for key, rows in order.items()]


def merge_rows(pieces: list[tuple[torch.LongTensor, torch.Tensor]], batch_size: int) -> torch.Tensor:
    """Scatter per-group results back into batch order (out-of-place, so autograd flows to every piece)."""
    first = pieces[0][1]
    merged = first.new_zeros((batch_size, *first.shape[1:]))
    for rows, piece in pieces:
        merged = merged.index_copy(0, rows.to(piece.device), piece)
    return merged


def run_encoder_by_rows(
    run: Callable[[str, dict[str, Any]], Any], groups: list[tuple[str, torch.LongTensor]], encoder_inputs: dict[str, Any]
) -> BaseModelOutput:
    """One encoder pass per group of rows (`run(key, inputs)`), merged into one output in batch order.

    Used where one pass cannot route rows itself: hierarchical sharing when per-layer hidden states are requested
    (Transformers' output capture expects one call per layer).
    """
    reference = encoder_inputs.get("input_ids", encoder_inputs.get("inputs_embeds"))
    batch_size = reference.shape[0]
    outputs = []
    for key, rows in groups:
        sub_inputs = {name: slice_rows(value, rows, batch_size) for name, value in encoder_inputs.items()}
        outputs.append((rows, run(key, sub_inputs)))
    merged = {"last_hidden_state": merge_rows([(rows, out.last_hidden_state) for rows, out in outputs], batch_size)}
    for field in ("hidden_states", "attentions"):
        values = [getattr(out, field, None) for _, out in outputs]
        if all(value is not None for value in values):
            merged[field] = tuple(
                merge_rows([(rows, value[i]) for (rows, _), value in zip(outputs, values)], batch_size)
                for i in range(len(values[0]))
            )
    return BaseModelOutput(**merged)


class BackboneLayoutError(ValueError):
    """The backbone is not built as a scheme needs (e.g. no per-layer stack of transformer blocks: ALBERT shares one
    block across its depth, GPT-2 names its blocks `h`). A recipe whose default scheme hits this falls back to hard
    sharing; a scheme the user chose fails with it."""


def find_layer_list(encoder: nn.Module) -> tuple[str, nn.ModuleList]:
    """The backbone's stack of transformer blocks: the `nn.ModuleList` of `num_hidden_layers` modules
    (`encoder.layer` in BERT/RoBERTa/ELECTRA, `transformer.layer` in DistilBERT). `BackboneLayoutError` if none."""
    num_layers = getattr(encoder.config, "num_hidden_layers", None)
    for name, module in encoder.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers and re.search(r"layers?$", name):
            return name, module
    raise BackboneLayoutError(
        f"Could not find the transformer blocks of {type(encoder).__name__} (an nn.ModuleList of num_hidden_layers="
        f"{num_layers} modules named '...layer' or '...layers'): this scheme needs a backbone built that way, e.g. BERT."
    )


def count_parameters(parameters) -> int:
    return sum(p.numel() for p in parameters)
