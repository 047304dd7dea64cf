"""The registered `adashare` scheme: wraps the backbone's layers, owns the per-task policy logits and their optimizer
group, anneals the temperature, ends the search (fixing the policy into the config) and runs each batch under the
sampled or fixed decisions. See the package docstring."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import logging

from ..base import SHARING, EncodedBatch, SharedModel, SharingScheme, find_layer_list
from . import policy as gumbel
from .layers import SkippableLayer, applied_decisions
from .options import AdaShareOptions, check_adashare_options


logger = logging.get_logger(__name__)


@SHARING.register("adashare")
class AdaShareSharing(SharingScheme):
    """Per-task execute/skip decisions for every layer, learned with Gumbel-softmax; see the package docstring."""

    name = "adashare"
    Options = AdaShareOptions
    unit_label = "layer policy"

    @classmethod
    def check_options(cls, options: AdaShareOptions, config):
        return check_adashare_options(options, config)

    def __init__(self, config):
        super().__init__(config)
        self.policy_logits = nn.ParameterDict()
        self.temperature = float(self.options.initial_temperature)
        self.layers_path = ""
        self.num_layers = 0
        self._key: re.Pattern | None = None

    @property
    def searching(self) -> bool:
        """True until the policy is fixed (`config.sharing_kwargs["policy"]`)."""
        return self.options.policy is None

    # ------------------------------------------------------------------ building

    def _initial_logits(self) -> torch.Tensor:
        return gumbel.initial_logits(self.options.initial_execute_probability, self.num_layers)

    def setup(self, model: SharedModel) -> None:
        self.layers_path, layers = find_layer_list(model.encoder)
        self.num_layers = len(layers)
        for index in range(len(layers)):
            layers[index] = SkippableLayer(layers[index])
        self._key = re.compile(rf"^{re.escape(self.layers_path)}\.(\d+)\.block\.")
        for task in model.config.task_names:
            self.policy_logits[task] = nn.Parameter(self._initial_logits(), requires_grad=self.searching)

    def after_init(self, model: SharedModel) -> None:
        with torch.no_grad():  # `post_init` does not know these parameters; keep them at the configured start
            for logits in self.policy_logits.values():
                logits.copy_(self._initial_logits())

    def _layers(self, model: SharedModel) -> list[SkippableLayer]:
        return list(model.encoder.get_submodule(self.layers_path))

    # ------------------------------------------------------------------ parameters

    def parameter_owner(self, name: str) -> tuple[str, str] | None:
        if name.startswith("sharing.policy_logits."):
            return ("policy", name.split(".")[2])
        return None

    def task_units(self, task: str) -> set[str]:
        return {task}

    def backbone_key(self, name: str) -> str | None:
        return self._key.sub(lambda m: f"{self.layers_path}.{m.group(1)}.", name)

    def optimizer_parameter_groups(self, model: SharedModel) -> list[dict[str, Any]]:
        params = [p for p in self.policy_logits.values() if p.requires_grad]
        if not params:
            return []
        return [{"params": params, "lr": self.options.policy_lr, "weight_decay": 0.0}]

    def auxiliary_loss_weights(self) -> dict[str, float]:
        return {"adashare_sparsity": float(self.options.sparsity_weight), "adashare_sharing": float(self.options.sharing_weight)}

    # ------------------------------------------------------------------ policy

    def execute_probabilities(self, task_names: list[str] | None = None) -> dict[str, list[float]]:
        """Each task's current probability of executing each layer, `softmax(logits)[:, 0]`."""
        names = task_names if task_names is not None else list(self.policy_logits)
        return {task: gumbel.execute_probabilities(self.policy_logits[task]) for task in names}

    def policy(self, task_names: list[str] | None = None) -> dict[str, list[int]]:
        """The fixed policy, or while searching the deterministic one the model evaluates with (execute if p >= 0.5)."""
        if self.options.policy is not None:
            return {task: list(self.options.policy[task]) for task in (task_names or self.options.policy)}
        return {task: [int(p >= 0.5) for p in probs] for task, probs in self.execute_probabilities(task_names).items()}

    def fix_policy(self, model: SharedModel) -> dict[str, list[int]]:
        """End the search: store the argmax policy in `model.config.sharing_kwargs["policy"]` (saved with the model)
        and freeze the logits. From now on every forward pass follows it. Returns the policy."""
        policy = self.policy(model.config.task_names)
        self._set_policy(model, policy)
        for logits in self.policy_logits.values():
            logits.requires_grad_(False)
        summary = ", ".join(f"{task}: {sum(v)}/{len(v)}" for task, v in policy.items())
        logger.info(f"AdaShare policy fixed (layers executed per task: {summary}).")
        idle = [task for task, decisions in policy.items() if not any(decisions)]
        if idle:
            logger.warning(
                f"AdaShare: task(s) {idle} skip every layer, so their heads read the embeddings only. The search was "
                "probably too short for its sparsity pressure: search longer, lower sparsity_weight, or raise "
                "initial_execute_probability."
            )
        return policy

    def _set_policy(self, model: SharedModel, policy: dict[str, list[int]] | None) -> None:
        self.options.policy = policy
        kwargs = dict(model.config.sharing_kwargs)
        kwargs["policy"] = policy
        model.config.sharing_kwargs = kwargs

    # ------------------------------------------------------------------ tasks

    def add_task(self, model: SharedModel, spec, init_from: str | None, group: str | None) -> None:
        super().add_task(model, spec, init_from, group)
        source = self.policy_logits[init_from].detach().clone() if init_from is not None else self._initial_logits()
        reference = next(model.encoder.parameters())
        self.policy_logits[spec.name] = nn.Parameter(source.to(reference.device), requires_grad=self.searching)
        if not self.searching:  # a new task executes every layer unless it copies a task's decisions
            policy = dict(self.options.policy)
            policy[spec.name] = list(policy[init_from]) if init_from is not None else [1] * self.num_layers
            self._set_policy(model, policy)

    def remove_task(self, model: SharedModel, name: str) -> None:
        del self.policy_logits[name]
        if not self.searching:
            self._set_policy(model, {task: v for task, v in self.options.policy.items() if task != name})

    # ------------------------------------------------------------------ training hooks

    def on_step_begin(self, model: SharedModel, step: int, max_steps: int) -> None:
        if not self.searching:
            return
        horizon = self.options.search_steps or max_steps
        initial, final = self.options.initial_temperature, self.options.final_temperature
        self.temperature = gumbel.annealed_temperature(initial, final, step, horizon)
        if self.options.search_steps is not None and step >= self.options.search_steps:
            self.fix_policy(model)

    def training_logs(self) -> dict[str, float]:
        if not self.searching:
            return {}
        logs = {"policy/temperature": round(self.temperature, 6)}
        for task, probs in self.execute_probabilities().items():
            logs.update({f"policy/{task}/layer_{i}": round(p, 6) for i, p in enumerate(probs)})
        return logs

    def on_train_end(self, model: SharedModel, output_dir: str, write: bool) -> list[str]:
        if self.searching:
            self.fix_policy(model)
        if not write:
            return []
        from ..reports import write_policy_report

        names = model.config.task_names
        return write_policy_report(output_dir, names, self.execute_probabilities(names), self.policy(names))

    # ------------------------------------------------------------------ forward

    def regularisers(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The sparsity and sharing losses of the package docstring, over the logits of the tasks `names`."""
        return gumbel.regularisers(torch.stack([self.policy_logits[t] for t in names]))

    def encode(self, model: SharedModel, task_ids, encoder_inputs) -> EncodedBatch:
        if encoder_inputs.get("output_attentions"):
            raise ValueError("output_attentions is not available with sharing='adashare': rows skip different layers, "
                             "so there is no one attention map per layer.")
        names = model.config.task_names
        want_hidden = bool(encoder_inputs.get("output_hidden_states"))
        inputs = {key: value for key, value in encoder_inputs.items() if key != "output_hidden_states"}
        layers = self._layers(model)
        auxiliary = None
        if self.training and self.searching:
            logits = torch.stack([self.policy_logits[t] for t in names])  # [tasks, layers, 2]
            decisions = gumbel.sampled_decisions(logits, self.temperature, task_ids, len(layers))
            auxiliary = self.regularisers(names)
        else:
            decisions = gumbel.fixed_decisions(self.policy(names), names, task_ids, len(layers))
        with applied_decisions(layers, decisions, want_hidden):
            outputs = model.encoder(**inputs)
            hidden_states = None
            if want_hidden:
                hidden_states = (layers[0].recorded[0], *(layer.recorded[1] for layer in layers))
        encoder_outputs = BaseModelOutput(last_hidden_state=outputs.last_hidden_state, hidden_states=hidden_states)
        return EncodedBatch(
            hidden_states=outputs.last_hidden_state,
            shared_hidden_states=outputs.last_hidden_state,
            encoder_outputs=encoder_outputs,
            auxiliary_losses=auxiliary,
        )
