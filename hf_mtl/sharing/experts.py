"""Softmax-gated experts: MMoE (Ma et al., KDD 2018, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts") and PLE's Customized Gate Control (Tang et al., RecSys 2020, "Progressive Layered
Extraction", CGC = one PLE level).

Above the shared lower encoder sit `num_experts` experts every task can use; each task has its own softmax gate
that mixes the experts' outputs for its rows. PLE (`sharing="ple"`) adds `num_task_experts` experts per task that
only that task's gate sees, so task-specific knowledge does not have to squeeze through the shared experts (the
"seesaw" effect the paper describes). Which experts each task leans on is learned, and shown: the mean gate weights
are logged during training (`gates/<task>/expert_<i>`, i < num_experts the shared experts, then the task's own) and
drawn at the end as a task x expert heat-map, `expert_gates.png` (+ `expert_gates.json`) in `output_dir`. Under
several processes each process counts its own rows; the main process logs and draws its own (the gates' weights
themselves are synchronised like every parameter).

Experts (`expert_type`):

- `"layer"` (default): each expert is a copy of the top `num_expert_layers` transformer layers; the layers below
  are shared. Built from a backbone checkpoint, every copy starts from the backbone's own top layers (like
  hierarchical sharing), so at step 0 the model computes exactly what the backbone does. Copies that start equal
  only drift apart through dropout and the gates' different weights, so the gates move slowly at first.
- `"ffn"`: the whole encoder is shared; each expert is a residual feed-forward block on its output,
  `h + W2 gelu(W1 h)` with `W2 = 0` at the start (every expert is the identity, the backbone's features pass
  unchanged) and width `ffn_hidden_size` (default: the encoder's hidden size).

Gates: one `Linear(hidden, experts)` + softmax per task, reading the experts' *input* pooled per row as the heads
pool (`config.pooling`): one distribution per row (not per token), so a row's mixture is the same for all of its
tokens and the logged weights are per-row means. Rows of a mixed batch use their own task's gate; a mixed batch
gives the same outputs as one call per task.

With `expert_type="layer"` the experts replace the top layers in the backbone's layer list (one module holding
every copy, at `encoder.<layers>.<first expert layer>`): `output_hidden_states` reports the gate-weighted mixture
of the experts' states at each expert depth; `output_attentions` is not available (each expert attends
differently).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import logging

from ..heads import pool
from .base import SHARING, EncodedBatch, SharedModel, SharingScheme, find_layer_list, merge_rows, slice_rows


logger = logging.get_logger(__name__)

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


class FeedForwardExpert(nn.Module):
    """`h + W2 gelu(W1 h)`; `W2` starts at zero (see `reset_to_identity`)."""

    def __init__(self, hidden_size: int, inner_size: int, dropout: float):
        super().__init__()
        self.dense_in = nn.Linear(hidden_size, inner_size)
        self.dense_out = nn.Linear(inner_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def reset_to_identity(self) -> None:
        with torch.no_grad():
            self.dense_out.weight.zero_()
            self.dense_out.bias.zero_()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.dropout(self.dense_out(nn.functional.gelu(self.dense_in(hidden_states))))


class ExpertMixtureLayer(nn.Module):
    """Takes the place of the top transformer layers (expert_type='layer'): runs each expert's stack of layer copies
    on the rows that need it and returns the gated mixture. The scheme sets `context` around each encoder call."""

    def __init__(self, shared: list[nn.ModuleList], per_task: dict[str, list[nn.ModuleList]]):
        super().__init__()
        self.shared_experts = nn.ModuleList(shared)
        self.task_experts = nn.ModuleDict({task: nn.ModuleList(stacks) for task, stacks in per_task.items()})
        self.context: tuple | None = None
        self.last_input: torch.Tensor | None = None
        self.last_levels: tuple[torch.Tensor, ...] = ()

    def forward(self, hidden_states, *args, **kwargs):
        if self.context is None:
            raise RuntimeError("These layers are gated experts (sharing='mmoe'/'ple'): call the MultiTaskModel, not its encoder alone.")
        scheme, names, task_ids, mask, all_levels = self.context
        batch_size = hidden_states.shape[0]
        self.last_input = hidden_states
        raw_output = []

        def run(key, rows):
            stack = self.shared_experts[key[1]] if key[0] == "shared" else self.task_experts[key[1]][key[2]]
            h, a, kw = hidden_states, args, kwargs
            if rows is not None:
                h = slice_rows(h, rows, batch_size)
                a = [slice_rows(v, rows, batch_size) for v in args]
                kw = {k: slice_rows(v, rows, batch_size) for k, v in kwargs.items()}
            levels = []
            for layer in stack:
                out = layer(h, *a, **kw)
                if not raw_output:
                    raw_output.append(out)
                h = out[0] if isinstance(out, tuple) else out
                levels.append(h)
            return torch.stack(levels if all_levels else levels[-1:], dim=-1)

        mixed = scheme.mix(names, hidden_states, task_ids, mask, run)  # [rows, seq, hidden, levels]
        self.last_levels = mixed.unbind(-1)
        output = self.last_levels[-1]
        if isinstance(raw_output[0], tuple):  # older layer classes return tuples: keep the encoder's indexing right
            return (output, *raw_output[0][1:])
        return output


@SHARING.register("mmoe")
class MMoESharing(SharingScheme):
    """Shared experts mixed by one softmax gate per task (MMoE); see the module docstring."""

    name = "mmoe"
    Options = MMoEOptions
    unit_label = "task gate"

    @classmethod
    def check_options(cls, options, config):
        _positive_int(cls.name, "num_experts", options.num_experts, "the number of shared experts")
        if options.expert_type not in EXPERT_TYPES:
            close = get_close_matches(str(options.expert_type), EXPERT_TYPES, n=1)
            raise ValueError(
                f"Unknown expert_type {options.expert_type!r} for sharing={cls.name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + ". Choose one of: " + "; ".join(f"{k!r} ({v})" for k, v in EXPERT_TYPES.items()) + "."
            )
        num_layers = getattr(config.encoder, "num_hidden_layers", None)
        _positive_int(cls.name, "num_expert_layers", options.num_expert_layers, "top transformer layers each expert copies")
        if num_layers is not None and options.num_expert_layers > num_layers:
            raise ValueError(
                f"num_expert_layers={options.num_expert_layers} but the backbone has {num_layers} layers: use 1..{num_layers}."
            )
        if options.ffn_hidden_size is not None:
            _positive_int(cls.name, "ffn_hidden_size", options.ffn_hidden_size, "the width of a feed-forward expert")
        if hasattr(options, "num_task_experts"):
            _positive_int(cls.name, "num_task_experts", options.num_task_experts, "experts per task (0 is sharing='mmoe')")
        return options

    def __init__(self, config):
        super().__init__(config)
        self.gates = nn.ModuleDict()
        self.experts = nn.ModuleList()  # expert_type="ffn"; layer copies live in the encoder
        self.task_experts = nn.ModuleDict()
        self.num_shared = self.options.num_experts
        self.num_own = getattr(self.options, "num_task_experts", 0)
        self.layers_path = ""
        self.first_expert_layer = 0
        self._key: re.Pattern | None = None
        self._gate_sums: dict[str, torch.Tensor] = {}
        self._gate_counts: dict[str, int] = {}
        self._last_logged: dict[str, list[float]] = {}
        self._pooling = config.pooling

    @property
    def expert_names(self) -> list[str]:
        """Column names of the gate weights: `shared_<i>` then (PLE) the task's own `task_<j>`."""
        return [f"shared_{i}" for i in range(self.num_shared)] + [f"task_{j}" for j in range(self.num_own)]

    # ------------------------------------------------------------------ building

    def _gate(self, config) -> nn.Linear:
        return nn.Linear(config.encoder.hidden_size, self.num_shared + self.num_own)

    def _ffn(self, config) -> FeedForwardExpert:
        encoder = config.encoder
        inner = self.options.ffn_hidden_size or encoder.hidden_size
        return FeedForwardExpert(encoder.hidden_size, inner, getattr(encoder, "hidden_dropout_prob", 0.1))

    def setup(self, model: SharedModel) -> None:
        config = model.config
        for task in config.task_names:
            self.gates[task] = self._gate(config)
        if self.options.expert_type == "ffn":
            self.experts.extend(self._ffn(config) for _ in range(self.num_shared))
            for task in config.task_names:
                self.task_experts[task] = nn.ModuleList(self._ffn(config) for _ in range(self.num_own))
            return
        self.layers_path, layers = find_layer_list(model.encoder)
        self.first_expert_layer = first = len(layers) - self.options.num_expert_layers
        top = list(layers[first:])

        def stack():
            return nn.ModuleList(copy.deepcopy(layer) for layer in top)

        mixture = ExpertMixtureLayer(
            [stack() for _ in range(self.num_shared)], {task: [stack() for _ in range(self.num_own)] for task in config.task_names}
        )
        del layers[first + 1 :]  # the experts' stacks replace the top layers
        layers[first] = mixture
        path = re.escape(f"{self.layers_path}.{first}")
        self._key = re.compile(rf"^{path}\.(?:shared_experts\.\d+|task_experts\.([^.]+)\.\d+)\.(\d+)\.")

    def after_init(self, model: SharedModel) -> None:
        for module in self.modules():
            if isinstance(module, FeedForwardExpert):
                module.reset_to_identity()

    def _mixture(self, model: SharedModel) -> ExpertMixtureLayer:
        return model.encoder.get_submodule(self.layers_path)[self.first_expert_layer]

    # ------------------------------------------------------------------ parameters

    def parameter_owner(self, name: str) -> tuple[str, str] | None:
        if name.startswith("sharing.gates."):
            return ("gate", name.split(".")[2])
        if name.startswith("sharing.task_experts."):
            return ("experts", name.split(".")[2])
        if self._key is not None and name.startswith("encoder."):
            match = self._key.match(name[len("encoder.") :])
            if match and match.group(1):
                return ("experts", match.group(1))
        return None

    def task_units(self, task: str) -> set[str]:
        return {task}

    def backbone_key(self, name: str) -> str | None:
        # Layer j of every expert's stack starts from the backbone's layer first_expert_layer + j.
        if self._key is None:
            return name
        return self._key.sub(lambda m: f"{self.layers_path}.{self.first_expert_layer + int(m.group(2))}.", name)

    # ------------------------------------------------------------------ tasks

    def add_task(self, model: SharedModel, spec, init_from: str | None, group: str | None) -> None:
        super().add_task(model, spec, init_from, group)
        reference = next(model.encoder.parameters())
        gate = self._gate(model.config)
        if init_from is not None:
            gate.load_state_dict(self.gates[init_from].state_dict())
        else:
            model._init_weights(gate)
        self.gates[spec.name] = gate.to(device=reference.device, dtype=reference.dtype).train(model.training)
        if self.options.expert_type == "ffn":
            if init_from is not None:
                own = copy.deepcopy(self.task_experts[init_from])
            else:
                own = nn.ModuleList(self._ffn(model.config) for _ in range(self.num_own))
                own.apply(model._init_weights)
                for expert in own:
                    expert.reset_to_identity()
            self.task_experts[spec.name] = own.to(device=reference.device, dtype=reference.dtype).train(model.training)
        else:
            mixture = self._mixture(model)
            # A new task's own experts start from `init_from`'s, else from the first shared expert (the backbone's
            # layers when the model was built from a backbone and not trained yet).
            source = mixture.task_experts[init_from] if init_from is not None else [mixture.shared_experts[0]] * self.num_own
            mixture.task_experts[spec.name] = nn.ModuleList(copy.deepcopy(stack) for stack in source)

    def remove_task(self, model: SharedModel, name: str) -> None:
        del self.gates[name]
        self._gate_sums.pop(name, None)
        self._gate_counts.pop(name, None)
        if self.options.expert_type == "ffn":
            del self.task_experts[name]
        else:
            del self._mixture(model).task_experts[name]

    # ------------------------------------------------------------------ forward

    def mix(self, names: list[str], hidden: torch.Tensor, task_ids, mask, run) -> torch.Tensor:
        """Gate-weighted sum of the experts' outputs, each row with its task's gate.

        `run(key, rows)` returns an expert's output `[rows, seq, hidden, levels]` for `rows` (`None` = every row);
        keys are `("shared", i)` and `("task", task, j)`. Shared experts run once on the whole batch, a task's own
        experts on its rows only.
        """
        batch_size = hidden.shape[0]
        pooled = pool(hidden, mask, self._pooling)
        shared = [run(("shared", i), None) for i in range(self.num_shared)]
        pieces = []
        for index in torch.unique(task_ids).tolist():
            task = names[index]
            rows = (task_ids == index).nonzero(as_tuple=True)[0]
            whole = rows.numel() == batch_size
            outputs = [out if whole else out.index_select(0, rows) for out in shared]
            outputs += [run(("task", task, j), None if whole else rows) for j in range(self.num_own)]
            gate = torch.softmax(self.gates[task](pooled if whole else pooled[rows]).float(), dim=-1)
            stacked = torch.stack(outputs, dim=-1)  # [rows, seq, hidden, levels, experts]
            weights = gate.to(stacked.dtype).view(gate.shape[0], 1, 1, 1, gate.shape[1])
            pieces.append((rows, (stacked * weights).sum(-1)))
            if self.training:
                detached = gate.detach().sum(0)
                self._gate_sums[task] = self._gate_sums[task] + detached if task in self._gate_sums else detached
                self._gate_counts[task] = self._gate_counts.get(task, 0) + rows.numel()
        if len(pieces) == 1 and pieces[0][0].numel() == batch_size:
            return pieces[0][1]
        return merge_rows(pieces, batch_size)

    def encode(self, model: SharedModel, task_ids, encoder_inputs) -> EncodedBatch:
        names = model.config.task_names
        mask = encoder_inputs.get("attention_mask")
        self._pooling = model.config.pooling
        if self.options.expert_type == "ffn":
            outputs = model.encoder(**encoder_inputs)
            shared = outputs.last_hidden_state
            experts = {("shared", i): e for i, e in enumerate(self.experts)}

            def run(key, rows):
                expert = experts[key] if key[0] == "shared" else self.task_experts[key[1]][key[2]]
                return expert(shared if rows is None else shared.index_select(0, rows)).unsqueeze(-1)

            mixed = self.mix(names, shared, task_ids, mask, run)[..., -1]
            return EncodedBatch(hidden_states=mixed, shared_hidden_states=shared, encoder_outputs=outputs)

        if encoder_inputs.get("output_attentions"):
            raise ValueError(
                f"output_attentions is not available with sharing={self.name!r} and expert_type='layer': the top "
                f"{self.options.num_expert_layers} layer(s) are {self.num_shared + self.num_own} experts that attend "
                "differently. Use expert_type='ffn' (experts above a fully shared encoder) to inspect attentions."
            )
        want_hidden = bool(encoder_inputs.get("output_hidden_states"))
        inputs = {key: value for key, value in encoder_inputs.items() if key != "output_hidden_states"}
        mixture = self._mixture(model)
        recorded: list[torch.Tensor] = []
        handles = []
        if want_hidden:  # the input of every shared layer and of the experts; the experts' levels come from the mixture
            for layer in model.encoder.get_submodule(self.layers_path):
                handles.append(layer.register_forward_pre_hook(lambda module, args: recorded.append(args[0])))
        mixture.context = (self, names, task_ids, mask, want_hidden)
        try:
            outputs = model.encoder(**inputs)
            shared = mixture.last_input
            levels = mixture.last_levels
        finally:
            mixture.context, mixture.last_input, mixture.last_levels = None, None, ()
            for handle in handles:
                handle.remove()
        encoder_outputs = BaseModelOutput(
            last_hidden_state=outputs.last_hidden_state, hidden_states=tuple(recorded) + tuple(levels) if want_hidden else None
        )
        return EncodedBatch(hidden_states=outputs.last_hidden_state, shared_hidden_states=shared, encoder_outputs=encoder_outputs)

    # ------------------------------------------------------------------ what was learned

    def gate_weights(self, reset: bool = False) -> dict[str, list[float]]:
        """Mean gate weights per task over the training rows seen since the last reset (`{task: [w_expert, ...]}`,
        each a distribution over `expert_names`). Tasks without training rows since then are left out."""
        weights = {
            task: (self._gate_sums[task].double() / count).tolist()
            for task, count in self._gate_counts.items()
            if count > 0
        }
        if reset:
            self._gate_sums, self._gate_counts = {}, {}
        return weights

    def training_logs(self) -> dict[str, float]:
        weights = self.gate_weights(reset=True)
        self._last_logged.update(weights)
        return {f"gates/{task}/expert_{i}": round(w, 6) for task, values in weights.items() for i, w in enumerate(values)}

    def on_train_end(self, model: SharedModel, output_dir: str, write: bool) -> list[str]:
        final = {**self._last_logged, **self.gate_weights(reset=True)}  # the last logging window per task
        self._last_logged = final
        if not write:
            return []
        if not final:
            logger.warning("No gate weights were recorded during training (no training step ran): expert_gates.png not written.")
            return []
        from .reports import write_gate_report

        return write_gate_report(output_dir, self.name, model.config, final, self.expert_names)


@SHARING.register("ple")
class PLESharing(MMoESharing):
    """MMoE plus `num_task_experts` experts per task that only its gate sees (PLE's CGC); see the module docstring."""

    name = "ple"
    Options = PLEOptions
    unit_label = "task gate/expert"


def _positive_int(scheme: str, key: str, value: Any, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"sharing={scheme!r} `{key}` ({what}) must be an integer >= 1, got {value!r}.")
