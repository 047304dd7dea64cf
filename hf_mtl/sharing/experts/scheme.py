"""The registered `mmoe` and `ple` schemes: building the experts into the model, one softmax gate per task, the
gated forward pass and what the gates learned (logged means, the heat-map at the end). See the package docstring."""

from __future__ import annotations

import copy
import re

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import logging

from ...heads import pool
from ...utils.encoder_settings import hidden_dropout
from ..base import SHARING, EncodedBatch, SharedModel, SharingScheme, find_layer_list, merge_rows
from .layers import ExpertMixtureLayer, FeedForwardExpert
from .options import MMoEOptions, PLEOptions, check_expert_options


logger = logging.get_logger(__name__)


@SHARING.register("mmoe")
class MMoESharing(SharingScheme):
    """Shared experts mixed by one softmax gate per task (MMoE); see the package docstring."""

    name = "mmoe"
    Options = MMoEOptions
    unit_label = "task gate"

    @classmethod
    def check_options(cls, options, config):
        return check_expert_options(cls.name, options, config)

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
        return FeedForwardExpert(encoder.hidden_size, inner, hidden_dropout(encoder))

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
        from ..reports import write_gate_report

        return write_gate_report(output_dir, self.name, model.config, final, self.expert_names)


@SHARING.register("ple")
class PLESharing(MMoESharing):
    """MMoE plus `num_task_experts` experts per task that only its gate sees (PLE's CGC); see the package docstring."""

    name = "ple"
    Options = PLEOptions
    unit_label = "task gate/expert"
