"""AdaShare (Sun, Panda, Feris & Saenko, NeurIPS 2020, "AdaShare: Learning What To Share For Efficient Deep
Multi-Task Learning", arXiv:1911.12423): every task learns, for every transformer layer, whether to execute it or
skip it (the residual path alone). Tasks that execute the same layer share it; a task that skips layers runs faster.

Search phase (training, no fixed policy): each task has logits `[num_layers, 2]` (execute, skip); every forward pass
draws a hard decision per task and layer with straight-through Gumbel-softmax (`torch.nn.functional.gumbel_softmax
(hard=True)`), so the forward pass is discrete while the logits get gradients. Each row uses its task's decisions:

    h_out = h + d * (layer(h) - h),   d in {0, 1} (its gradient flows to the logits)

The temperature anneals exponentially from `initial_temperature` to `final_temperature` over the search (the paper
decays it every epoch; a smooth schedule per optimizer step is the same idea without an epoch dependency). The
paper's two regularisers are returned as auxiliary losses the trainer adds with their weights (`sparsity_weight`,
`sharing_weight`), where p[k, l] is task k's probability of executing layer l (L layers, K tasks):

    adashare_sparsity = mean over k, l of log p[k, l]                             (pushes towards skipping)
    adashare_sharing  = mean over pairs k1 < k2 and layers l of (L - l) / L * |p[k1, l] - p[k2, l]|
                                                      (lower layers agree most: they hold general features)

(means instead of the paper's sums, so the weights do not depend on the number of tasks and layers). The logits
train with their own learning rate (`policy_lr`, the paper's 0.01) and no weight decay. Deviations: weights and
policy are trained jointly on the same batches (the paper alternates them on two halves of the training data) and
there is no curriculum over the skippable layers.

Start: every layer is executed with probability `initial_execute_probability` (default 0.9: the search starts near
the pretrained network and skips what it learns to do without; with 0.5 and a short search, random skips plus the
sparsity term leave tasks skipping almost everything, which `fix_policy` warns about).

Fixed policy: at `search_steps` (or at the end of training when it is `None`) the policy becomes the argmax,
`execute = p >= 0.5`, and is written to `config.sharing_kwargs["policy"]` (`{task: [1, 0, ...]}`), so it saves and
loads with `save_pretrained` / `from_pretrained`; training after the search fine-tunes under it. Whenever the model
is not searching (evaluation, inference, a fixed policy) the decisions are deterministic and a layer runs only on the
rows whose task executes it: a one-task batch never calls the layers its task skips. The learned policy is drawn as
`adashare_policy.png` (task x layer) with `adashare_policy.json` in `output_dir`.

Implementation: each layer of the backbone's layer list is wrapped in a `SkippableLayer`
(`encoder.<layers>.<i>.block.*`, mapped to the backbone's `<layers>.<i>.*`); the policy logits are
`sharing.policy_logits.<task>`. `output_hidden_states` reports each layer's per-row output (the input itself where a
row skips the layer); `output_attentions` is not available.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import logging

from ..errors import TaskError
from ..utils.input_checks import check_names_every_task
from .base import SHARING, EncodedBatch, SharedModel, SharingScheme, find_layer_list, slice_rows


logger = logging.get_logger(__name__)



@dataclass
class AdaShareOptions:
    initial_temperature: float = field(default=5.0, metadata={"help": "Gumbel-softmax temperature at the start of the search (> 0)."})
    final_temperature: float = field(default=0.5, metadata={"help": "Temperature at the end of the search (> 0, <= initial)."})
    search_steps: int | None = field(
        default=None,
        metadata={"help": "Optimizer steps of the search; the policy is then fixed and training fine-tunes under it. "
                  "None: the whole run searches and the policy is fixed at the end."},
    )
    sparsity_weight: float = field(default=0.05, metadata={"help": "Weight of the sparsity regulariser (pushes tasks to skip layers)."})
    sharing_weight: float = field(default=0.05, metadata={"help": "Weight of the sharing regulariser (lower layers: same decision across tasks)."})
    policy_lr: float | None = field(default=0.01, metadata={"help": "Learning rate of the policy logits (None: the trainer's)."})
    initial_execute_probability: float = field(
        default=0.9,
        metadata={"help": "P(execute) of every layer at the start, in (0, 1). 0.9 starts near the pretrained network; "
                  "0.5 explores more but needs a long search."},
    )
    policy: dict[str, list[int]] | None = field(
        default=None, metadata={"help": "The fixed policy {task: [1 = execute, 0 = skip per layer]}; written when the search ends."}
    )


class SkippableLayer(nn.Module):
    """A transformer layer that each row executes or skips; the scheme sets `decision` around each encoder call:
    `("soft", d)` with `d` `[rows]` in {0, 1} carrying gradients (search), or `("rows", indices)` of the rows that
    execute it (every other case; the layer runs on those rows only)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.decision: tuple[str, torch.Tensor] | None = None
        self.record = False
        self.recorded: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, hidden_states, *args, **kwargs):
        if self.decision is None:
            raise RuntimeError("This layer is skipped per task (sharing='adashare'): call the MultiTaskModel, not its encoder alone.")
        kind, value = self.decision
        batch_size = hidden_states.shape[0]
        if kind == "soft":
            out = _first(self.block(hidden_states, *args, **kwargs))
            result = hidden_states + value.to(out.dtype).view(-1, *([1] * (out.dim() - 1))) * (out - hidden_states)
        elif value.numel() == 0:
            result = hidden_states
        elif value.numel() == batch_size:
            result = _first(self.block(hidden_states, *args, **kwargs))
        else:
            sub_args = [slice_rows(v, value, batch_size) for v in args]
            sub_kwargs = {k: slice_rows(v, value, batch_size) for k, v in kwargs.items()}
            out = _first(self.block(slice_rows(hidden_states, value, batch_size), *sub_args, **sub_kwargs))
            result = hidden_states.index_copy(0, value, out.to(hidden_states.dtype))
        if self.record:
            self.recorded = (hidden_states, result)
        return result


def _first(output):
    if isinstance(output, tuple):
        raise TypeError("sharing='adashare' needs transformer layers that return a tensor (BERT-family models in Transformers 5).")
    return output


@SHARING.register("adashare")
class AdaShareSharing(SharingScheme):
    """Per-task execute/skip decisions for every layer, learned with Gumbel-softmax; see the module docstring."""

    name = "adashare"
    Options = AdaShareOptions
    unit_label = "layer policy"

    @classmethod
    def check_options(cls, options: AdaShareOptions, config):
        for key in ("initial_temperature", "final_temperature"):
            value = getattr(options, key)
            if not _is_number(value) or not value > 0:
                raise ValueError(f"sharing='adashare' `{key}` must be a number > 0 (a Gumbel-softmax temperature, e.g. 5.0 "
                                 f"then 0.5), got {value!r}.")
        if options.final_temperature > options.initial_temperature:
            raise ValueError(f"sharing='adashare' anneals the temperature down: final_temperature={options.final_temperature!r} "
                             f"must be <= initial_temperature={options.initial_temperature!r}.")
        if options.search_steps is not None and (not isinstance(options.search_steps, int) or isinstance(options.search_steps, bool)
                                                 or options.search_steps < 1):
            raise ValueError(f"sharing='adashare' `search_steps` must be an integer >= 1 or None (search the whole run), "
                             f"got {options.search_steps!r}.")
        for key in ("sparsity_weight", "sharing_weight"):
            value = getattr(options, key)
            if not _is_number(value) or value < 0:
                raise ValueError(f"sharing='adashare' `{key}` must be a number >= 0, got {value!r}.")
        if options.policy_lr is not None and (not _is_number(options.policy_lr) or not options.policy_lr > 0):
            raise ValueError(f"sharing='adashare' `policy_lr` must be > 0 or None (the trainer's learning rate), got {options.policy_lr!r}.")
        p = options.initial_execute_probability
        if not _is_number(p) or not 0 < p < 1:
            raise ValueError(f"sharing='adashare' `initial_execute_probability` must be in (0, 1), got {p!r}.")
        if options.policy is not None:
            options.policy = _check_policy(options.policy, config.task_names, getattr(config.encoder, "num_hidden_layers", None))
        return options

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
        p = self.options.initial_execute_probability
        return torch.tensor([[math.log(p), math.log(1 - p)]] * self.num_layers)

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
        return {task: torch.softmax(self.policy_logits[task].detach().float(), -1)[:, 0].tolist() for task in names}

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
        fraction = min(step / max(horizon - 1, 1), 1.0)  # the last step of the search runs at final_temperature
        initial, final = self.options.initial_temperature, self.options.final_temperature
        self.temperature = initial * (final / initial) ** fraction
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
        from .reports import write_policy_report

        names = model.config.task_names
        return write_policy_report(output_dir, names, self.execute_probabilities(names), self.policy(names))

    # ------------------------------------------------------------------ forward

    def regularisers(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The sparsity and sharing losses of the module docstring, over every task's logits."""
        log_p = torch.log_softmax(torch.stack([self.policy_logits[t] for t in names]).float(), dim=-1)[..., 0]
        p = log_p.exp()  # [tasks, layers]
        sparsity = log_p.mean()
        if len(names) > 1:
            num_layers = p.shape[1]
            depth = (num_layers - torch.arange(num_layers, device=p.device, dtype=p.dtype)) / num_layers
            first, second = torch.triu_indices(len(names), len(names), offset=1, device=p.device)
            sharing = ((p[first] - p[second]).abs() * depth).mean()
        else:
            sharing = p.sum() * 0.0
        return {"adashare_sparsity": sparsity, "adashare_sharing": sharing}

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
            samples = nn.functional.gumbel_softmax(logits, tau=self.temperature, hard=True, dim=-1)[..., 0]
            row_decisions = samples[task_ids]  # [rows, layers], straight-through gradients to the logits
            decisions = [("soft", row_decisions[:, i]) for i in range(len(layers))]
            auxiliary = self.regularisers(names)
        else:
            policy = self.policy(names)
            execute = torch.tensor([policy[t] for t in names], dtype=torch.bool)[task_ids.cpu()]  # [rows, layers]
            decisions = [("rows", execute[:, i].nonzero(as_tuple=True)[0].to(task_ids.device)) for i in range(len(layers))]
        with _decisions(layers, decisions, want_hidden):
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


@contextlib.contextmanager
def _decisions(layers: list[SkippableLayer], decisions, record: bool):
    for layer, decision in zip(layers, decisions):
        layer.decision, layer.record = decision, record
    try:
        yield
    finally:
        for layer in layers:
            layer.decision, layer.record, layer.recorded = None, False, None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_policy(policy: Any, task_names: list[str], num_layers: int | None) -> dict[str, list[int]]:
    if not isinstance(policy, dict):
        raise ValueError(f"sharing='adashare' `policy` is {{task: [1 = execute, 0 = skip, one per layer]}}, got {policy!r}.")
    check_names_every_task(policy, task_names, "sharing='adashare' `policy`", TaskError)
    result = {}
    for task in task_names:
        decisions = policy[task]
        if (not isinstance(decisions, (list, tuple)) or (num_layers is not None and len(decisions) != num_layers)
                or any(d not in (0, 1) or isinstance(d, float) for d in decisions)):
            raise ValueError(
                f"sharing='adashare' policy of task {task!r} must be a list of {num_layers} values 1 (execute) or 0 "
                f"(skip), one per layer; got {decisions!r}."
            )
        result[task] = [int(d) for d in decisions]
    return result
