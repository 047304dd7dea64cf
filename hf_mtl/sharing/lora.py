"""Per-task LoRA adapters on one shared backbone (Hu et al., ICLR 2022, "LoRA: Low-Rank Adaptation of Large
Language Models", arXiv:2106.09685), injected with peft's integration API.

Each task gets a named LoRA adapter (`peft.functional.inject_adapter_in_model`, one call per task); the heads stay
per task. The backbone is frozen by default, so a task owns only its adapter and head: K tasks cost one backbone
plus K small adapters, and tasks cannot interfere through the shared weights.

Routing:
- a batch of one task activates that task's adapter (`peft.functional.set_adapter`, whose `requires_grad` side
  effect is undone so the optimizer keeps seeing every adapter);
- a batch mixing tasks runs once, each row, or each position of packed lines, through its own adapter
  (`lora_routing.mixed_adapters`); a backbone whose adapted layers see inputs not laid out by rows (`UnroutableInput`,
  e.g. DeBERTa's relative positions) or whose blocks run sequence first runs one call per task instead.

With `freeze_backbone=False` and `top_layers=N` the encoder stays shared and trained, and each task gets a low-rank
top of its own: on the dev suite this matches per-task copies of the top layers (`hierarchical`) at a tenth of
their extra parameters (README, "Hard sharing alone"), and it is the recipes' default (`RECIPE_MODEL_DEFAULTS`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import TaskError
from ..utils.fast_dropout import FastDropout
from .base import (
    SHARING,
    BackboneLayoutError,
    EncodedBatch,
    SharedModel,
    SharingScheme,
    find_layer_list,
    rows_by_key,
    run_encoder_by_rows,
)
from .fan_out import FAN_OUT_MODEL_TYPES, FanOutUnsupported, fanned_out, relative_block_passes
from .lora_routing import UnroutableInput, lora_layers, mixed_adapters, routes_positions, stackable
from .padding_free import run_encoder_padding_free


#: Backbones whose blocks hold states sequence first (`[width, rows, hidden]`): routing by row or position would read
#: the wrong dimension whenever a batch is as long as its rows, so their mixed batches run one call per task.
SEQUENCE_FIRST_MODEL_TYPES = frozenset({"xlnet"})
_ADAPTER_KEY = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)\.([^.]+)(\.|$)")
_OVERRIDABLE = ("r", "lora_alpha", "lora_dropout")


@dataclass
class LoraOptions:
    r: int = field(default=8, metadata={"help": "LoRA rank of every adapter."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA scaling numerator (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the adapter's input."})
    target_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Module names (or one regex) the adapters wrap; None uses peft's default for the backbone type "
            "(BERT: query, value)."
        },
    )
    top_layers: int | None = field(
        default=None,
        metadata={
            "help": "Put the adapters only in the top N transformer layers (on `target_modules` there, or on every "
            "linear layer of them if target_modules is None); None = peft's choice over all layers. With "
            "freeze_backbone=False this gives each task a low-rank top of its own on a shared encoder."
        },
    )
    freeze_backbone: bool = field(
        default=True, metadata={"help": "Freeze every backbone weight so tasks own only their adapter and head."}
    )
    learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the adapters, in a group of their own without weight decay (None: the trainer's "
            "learning rate and groups). Adapters start at zero and are small; beside a trainable backbone they need "
            "a larger rate than it (LoRA papers use 1e-4 to 1e-3)."
        },
    )
    learning_rate_multiplier: float | None = field(
        default=None,
        metadata={
            "help": "The adapters' learning rate as a multiple of the trainer's (e.g. 10, like `head_lr_multiplier`), "
            "in a group of their own without weight decay; an alternative to `learning_rate` that follows the "
            "recipe's rate. None: not used."
        },
    )
    adapters: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={"help": 'Per-task overrides of r / lora_alpha / lora_dropout, e.g. {"ner": {"r": 16}}.'},
    )


@SHARING.register("lora")
class LoraSharing(SharingScheme):
    """One LoRA adapter per task on the shared backbone; see the module docstring for routing and options."""

    name = "lora"
    Options = LoraOptions
    unit_label = "LoRA adapter"

    @classmethod
    def check_options(cls, options: LoraOptions, config):
        _check_adapter_values(options.r, options.lora_alpha, options.lora_dropout, "sharing_kwargs")
        if options.target_modules is not None and not isinstance(options.target_modules, str):
            if not isinstance(options.target_modules, (list, tuple)) or not options.target_modules or not all(
                isinstance(name, str) and name for name in options.target_modules
            ):
                raise ValueError(
                    f"LoRA target_modules must be a non-empty list of module names or one regex string, got "
                    f"{options.target_modules!r}."
                )
            options.target_modules = list(options.target_modules)
        rate = options.learning_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0):
            raise ValueError(f"LoRA `learning_rate` must be > 0 or None (the trainer's learning rate), got {rate!r}.")
        multiplier = options.learning_rate_multiplier
        if multiplier is not None and (isinstance(multiplier, bool) or not isinstance(multiplier, (int, float))
                                       or not multiplier > 0):
            raise ValueError(f"LoRA `learning_rate_multiplier` must be > 0 or None, got {multiplier!r}.")
        if multiplier is not None and rate is not None:
            raise ValueError(f"LoRA takes `learning_rate` ({rate!r}) or `learning_rate_multiplier` ({multiplier!r}), "
                             "not both: drop one.")
        top = options.top_layers
        if top is not None:
            num_layers = getattr(config.encoder, "num_hidden_layers", None)
            if isinstance(top, bool) or not isinstance(top, int) or top < 1 or (num_layers is not None and top > num_layers):
                raise ValueError(
                    f"LoRA `top_layers` must be an integer from 1 to the backbone's {num_layers} layers (or None for "
                    f"all), got {top!r}."
                )
            if isinstance(options.target_modules, str):
                raise ValueError(
                    f"LoRA `top_layers` picks the layers itself and takes target_modules as a list of module names, "
                    f"not the regex {options.target_modules!r}: pass names (e.g. ['query', 'value']) or drop top_layers."
                )
        if not isinstance(options.adapters, dict):
            raise ValueError(f"LoRA `adapters` is a dict {{task: {{r, lora_alpha, lora_dropout}}}}, got {options.adapters!r}.")
        unknown = sorted(set(options.adapters) - set(config.task_names))
        if unknown:
            raise TaskError(
                f"LoRA adapter settings for task(s) {unknown} that do not exist. This model's tasks: "
                f"{', '.join(config.task_names) or '(none)'}."
            )
        for task, override in options.adapters.items():
            bad = sorted(set(override) - set(_OVERRIDABLE)) if isinstance(override, dict) else [override]
            if bad:
                raise ValueError(f"LoRA adapter settings for {task!r}: unknown keys {bad}; use {', '.join(_OVERRIDABLE)}.")
            values = {key: override.get(key, getattr(options, key)) for key in _OVERRIDABLE}
            _check_adapter_values(values["r"], values["lora_alpha"], values["lora_dropout"], f"adapters[{task!r}]")
        return options

    def __init__(self, config):
        super().__init__(config)
        self.target_modules = self.options.target_modules  # resolved against the backbone in `setup`
        # Learned on first contact with the backbone: its adapted layers take inputs that are not rows (mixed batches
        # then run one call per task), or its blocks take inputs the prediction fan-out cannot repeat.
        self._calls_per_task = False
        self._fan_out_unsupported = False

    # ------------------------------------------------------------------ building

    def lora_config(self, task: str):
        from peft import LoraConfig

        values = {key: getattr(self.options, key) for key in _OVERRIDABLE}
        values.update(self.options.adapters.get(task, {}))
        return LoraConfig(target_modules=self.target_modules, bias="none", **values)

    def setup(self, model: SharedModel) -> None:
        if self.options.top_layers is not None:
            self.target_modules = top_layer_targets(model.encoder, self.options.top_layers, self.options.target_modules)
        for task in model.config.task_names:
            self._inject(model.encoder, task)
        for name, p in model.encoder.named_parameters():
            if self.parameter_owner("encoder." + name) is None:
                p.requires_grad_(not self.options.freeze_backbone)

    def _inject(self, encoder: nn.Module, task: str) -> None:
        from peft.functional import inject_adapter_in_model

        # peft freezes everything but adapters on each injection: keep the caller's choices for existing parameters.
        before = {id(p): p.requires_grad for p in encoder.parameters()}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Already found a `peft_config` attribute.*")
            try:
                inject_adapter_in_model(self.lora_config(task), encoder, adapter_name=task)
            except ValueError as error:
                getattr(encoder, "peft_config", {}).pop(task, None)
                linear = sorted({n.rsplit(".", 1)[-1] for n, m in encoder.named_modules() if isinstance(m, nn.Linear)})
                raise ValueError(
                    f"LoRA target_modules {self.options.target_modules!r} match no usable module of the backbone "
                    f"({type(encoder).__name__}): {error} Its linear layers are named: {', '.join(linear)}. Set "
                    "sharing_kwargs['target_modules'] to some of them, e.g. ['query', 'value']."
                ) from None
        for p in encoder.parameters():
            p.requires_grad_(before.get(id(p), True))
        for layer in lora_layers(encoder):  # the adapters' input dropout, drawn faster on CPU (same rate)
            if task in layer.lora_dropout and type(layer.lora_dropout[task]) is nn.Dropout:
                layer.lora_dropout[task] = FastDropout(layer.lora_dropout[task].p)

    def after_init(self, model: SharedModel) -> None:
        # The backbone's `_init_weights` also reaches the injected lora_B (trap: not zero): make every adapter the
        # identity again, as peft initialises it.
        for layer in lora_layers(model.encoder):
            for adapter in list(layer.lora_A.keys()):
                layer.reset_lora_parameters(adapter, init_lora_weights=True)

    # ------------------------------------------------------------------ parameters

    def parameter_owner(self, name: str) -> tuple[str, str] | None:
        if not name.startswith("encoder."):
            return None
        match = _ADAPTER_KEY.search(name)
        return ("adapter", match.group(2)) if match else None

    def task_units(self, task: str) -> set[str]:
        return {task}

    def optimizer_parameter_groups(self, model: SharedModel) -> list[dict[str, Any]]:
        rate, multiplier = self.options.learning_rate, self.options.learning_rate_multiplier
        if rate is None and multiplier is None:
            return []
        params = [p for name, p in model.named_parameters() if p.requires_grad and self.parameter_owner(name)]
        scale = {"lr": float(rate)} if rate is not None else {"lr_multiplier": float(multiplier)}
        return [{"params": params, **scale, "weight_decay": 0.0}] if params else []

    def backbone_key(self, name: str) -> str | None:
        if _ADAPTER_KEY.search("." + name):
            return None
        return name.replace(".base_layer.", ".")

    # ------------------------------------------------------------------ tasks

    def add_task(self, model: SharedModel, spec, init_from: str | None, group: str | None) -> None:
        super().add_task(model, spec, init_from, group)
        if init_from is not None:
            model.config.task_index(init_from)
            self.options.adapters[spec.name] = dict(self.options.adapters.get(init_from, {}))
        self._inject(model.encoder, spec.name)
        if init_from is not None:
            for layer in lora_layers(model.encoder):
                for table in (layer.lora_A, layer.lora_B):
                    if init_from in table:
                        table[spec.name].load_state_dict(table[init_from].state_dict())
        model.encoder.train(model.encoder.training)  # new dropout modules follow the model's mode
        model.config.sharing_kwargs = {**model.config.sharing_kwargs, "adapters": dict(self.options.adapters)}

    def remove_task(self, model: SharedModel, name: str) -> None:
        from peft.functional import delete_adapter

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*was active which is now deleted.*")
            delete_adapter(model.encoder, name, prefix="lora_")
        getattr(model.encoder, "peft_config", {}).pop(name, None)
        self.options.adapters.pop(name, None)
        model.config.sharing_kwargs = {**model.config.sharing_kwargs, "adapters": dict(self.options.adapters)}

    # ------------------------------------------------------------------ forward

    def encode(self, model: SharedModel, task_ids, encoder_inputs) -> EncodedBatch:
        names = model.config.task_names
        row_tasks = [names[i] for i in task_ids.tolist()]
        encoder = model.encoder
        present = list(dict.fromkeys(row_tasks))
        layers = lora_layers(encoder) if len(present) > 1 else []
        by_position = routes_positions(layers, present)

        @contextlib.contextmanager
        def route(keys, unpack):
            if len(set(keys)) == 1:
                self.activate(encoder, keys[0])
                yield
            else:
                with mixed_adapters(layers, keys):  # more than one task here, so `layers` was collected
                    yield

        def route_positions(position_keys, unpack):
            return mixed_adapters(layers, present, position_keys)

        outputs = None
        routable = not self._calls_per_task and encoder.config.model_type not in SEQUENCE_FIRST_MODEL_TYPES
        if len(present) > 1 and routable:
            try:
                outputs = run_encoder_padding_free(
                    encoder, encoder_inputs, model.config.encoder_packing, model.config.encoder_length_buckets,
                    row_tasks, route_positions if by_position else route, by_position=by_position,
                )
            except UnroutableInput:
                self._calls_per_task = True  # this backbone feeds its adapted layers inputs that are not rows

        def run_task(task, inputs):
            self.activate(encoder, task)
            return run_encoder_padding_free(encoder, inputs, model.config.encoder_packing,
                                            model.config.encoder_length_buckets)

        if outputs is None and len(present) == 1:
            outputs = run_task(present[0], encoder_inputs)
        elif outputs is None:  # one call per task, each with its adapter active
            outputs = run_encoder_by_rows(run_task, rows_by_key(row_tasks, task_ids.device), encoder_inputs)
        hidden = outputs.last_hidden_state
        return EncodedBatch(hidden_states=hidden, shared_hidden_states=hidden, encoder_outputs=outputs)

    def _fan_out_plan(self, model: SharedModel, tasks: list[str]) -> tuple[nn.ModuleList, int, list[nn.Module]] | None:
        """The blocks, the first adapted one and the LoRA layers, where every adapter of `tasks` sits in a block and
        they stack (so each position can take its own); else None."""
        if len(tasks) < 2 or self._fan_out_unsupported or self._calls_per_task:
            return None
        if getattr(model.encoder.config, "model_type", None) not in FAN_OUT_MODEL_TYPES:
            return None
        try:
            _, blocks = find_layer_list(model.encoder)
        except BackboneLayoutError:
            return None
        layers = lora_layers(model.encoder)
        block_of = {id(module): index for index, block in enumerate(blocks) for module in block.modules()}
        if not layers or any(id(layer) not in block_of for layer in layers):
            return None  # an adapter outside the blocks (e.g. on the embeddings) changes every block's input
        if not all(stackable(layer, tasks) for layer in layers):
            return None
        return blocks, min(block_of[id(layer)] for layer in layers), layers

    def fan_out_cost(self, model: SharedModel, tasks: list[str]) -> float | None:
        plan = self._fan_out_plan(model, tasks)
        return None if plan is None else relative_block_passes(plan[1], len(plan[0]), len(tasks))

    def encode_tasks(self, model: SharedModel, encoder_inputs: dict[str, Any], tasks: list[str]) -> dict[str, torch.Tensor] | None:
        """The blocks below the first adapted one run once; from there the rows are repeated once per task, each copy
        through its own task's adapters (`fanned_out` and position routing)."""
        plan = self._fan_out_plan(model, tasks)
        if plan is None:
            return None
        blocks, start, layers = plan
        reference = encoder_inputs.get("input_ids")
        reference = encoder_inputs["attention_mask"] if reference is None else reference
        batch, width = reference.shape[:2]
        copies = torch.arange(len(tasks), device=reference.device).repeat_interleave(batch)
        try:
            with fanned_out(blocks, start, len(tasks), batch), mixed_adapters(layers, tasks, copies[:, None].expand(-1, width)):
                hidden = model.encoder(**encoder_inputs).last_hidden_state
        except (FanOutUnsupported, UnroutableInput):
            self._fan_out_unsupported = True  # this backbone's blocks take inputs the fan-out cannot repeat or route
            return None
        return dict(zip(tasks, hidden.split(batch)))

    @staticmethod
    def activate(encoder: nn.Module, task: str) -> None:
        """Make `task`'s adapter the active one, keeping every parameter's `requires_grad` as it was
        (`set_adapter` would freeze the other adapters, and an optimizer built afterwards would skip them)."""
        from peft.functional import set_adapter

        flags = [(p, p.requires_grad) for p in encoder.parameters()]
        set_adapter(encoder, task)
        for p, flag in flags:
            p.requires_grad_(flag)

    # ------------------------------------------------------------------ export

    def save_adapter(self, model: SharedModel, task: str, save_directory: str) -> None:
        """Write `task`'s adapter in PEFT format (`adapter_model.safetensors` + `adapter_config.json`), loadable with
        `PeftModel.from_pretrained(AutoModel.from_pretrained(backbone), save_directory)`."""
        from peft.functional import get_peft_model_state_dict
        from safetensors.torch import save_file

        model.config.task_index(task)
        state = get_peft_model_state_dict(model.encoder, adapter_name=task)
        state = {f"base_model.model.{key}": value.detach().cpu().contiguous() for key, value in state.items()}
        os.makedirs(save_directory, exist_ok=True)
        save_file(state, os.path.join(save_directory, "adapter_model.safetensors"), metadata={"format": "pt"})
        config = self.lora_config(task)
        config.target_modules = model.encoder.peft_config[task].target_modules
        # The backbone the adapter was trained on (the encoder config keeps it through save/reload of the hf_mtl
        # model, whose own name_or_path is the hf_mtl folder) and its class, as peft records a base model without a
        # task type: `AutoPeftModel.from_pretrained(save_directory)` then rebuilds the base model by itself.
        config.base_model_name_or_path = getattr(model.config.encoder, "_name_or_path", None) or None
        config.task_type = None
        config.auto_mapping = {"base_model_class": type(model.encoder).__name__, "parent_library": type(model.encoder).__module__}
        config.save_pretrained(save_directory)
        with open(os.path.join(save_directory, "hf_mtl_adapter.json"), "w") as handle:
            json.dump({"task": model.config.task_spec(task).to_dict(), "backbone_frozen": self.options.freeze_backbone}, handle, indent=2)
        if not self.options.freeze_backbone:
            warnings.warn(  # noqa: B028
                f"The backbone of this model was trainable (freeze_backbone=False): the exported adapter of {task!r} "
                "reproduces the model's outputs only on this model's backbone weights, not on the original backbone."
            )


def top_layer_targets(encoder: nn.Module, top_layers: int, names: list[str] | None) -> str:
    """A `target_modules` regex for peft: the modules called `names` (default: every linear layer) inside the top
    `top_layers` transformer blocks of `encoder`."""
    path, layers = find_layer_list(encoder)
    indices = range(len(layers) - top_layers, len(layers))
    if names is None:
        names = sorted({name.rsplit(".", 1)[-1] for i in indices for name, module in layers[i].named_modules()
                        if isinstance(module, nn.Linear)})
    alternatives = "|".join(re.escape(name) for name in names)
    return rf"{re.escape(path)}\.({'|'.join(map(str, indices))})\.(.*\.)?({alternatives})"


def _check_adapter_values(r, alpha, dropout, where: str) -> None:
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ValueError(f"LoRA rank `r` in {where} must be a positive integer, got {r!r}.")
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"LoRA `lora_alpha` in {where} must be > 0, got {alpha!r}.")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"LoRA `lora_dropout` in {where} must be in [0, 1), got {dropout!r}.")
