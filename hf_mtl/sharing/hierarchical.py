"""Hierarchical sharing: the embeddings and the lowest `num_shared_layers` transformer layers are shared, the layers
above are copied per task group (each task its own group unless grouped).

Low layers hold general, lexical features and high layers task-specific ones (Søgaard & Goldberg, ACL 2016;
Sanh et al., AAAI 2019, HMTL), so sharing only the bottom lets unrelated tasks stop competing for the top, while
related tasks grouped together keep sharing more (groups can come from `hf_mtl.evaluation.affinity.suggest_groups`, Fifty et
al. 2021). With a backbone checkpoint every copy starts from the backbone's own upper layers.

Implementation: each upper layer in the backbone's layer list is replaced by a `GroupRoutedLayer` holding one copy
per group (`encoder.<layers>.<i>.groups.<group>.*`). The encoder still runs once per batch: a routed layer sends
each group's rows through that group's copy and scatters the results back. In training the rows are packed as under
hard sharing (`encoder_packing`), each packed line holding rows of one group, so a line is routed whole. When
per-layer hidden states or attentions are requested for a batch that mixes groups, the encoder runs once per group
instead, so Transformers' output capture sees one call per layer.
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import TaskError
from .base import (
    SHARING,
    EncodedBatch,
    SharedModel,
    SharingScheme,
    find_layer_list,
    merge_rows,
    rows_by_key,
    run_encoder_by_rows,
    slice_rows,
)
from .padding_free import run_encoder_padding_free


_GROUP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass
class HierarchicalOptions:
    num_shared_layers: int | None = field(
        default=None, metadata={"help": "How many of the lowest transformer layers all tasks share (0 = embeddings only)."}
    )
    groups: dict[str, list[str]] | list[list[str]] | None = field(
        default=None,
        metadata={
            "help": "Task groups that share their upper layers: {name: [tasks]} or [[tasks], ...] (named group_0, ...). "
            "Tasks in no group get their own copy, named after the task."
        },
    )


class GroupRoutedLayer(nn.Module):
    """One copy of a transformer layer per group; rows go through their group's copy.

    The scheme sets `routing` (`[(group, rows)]`, batch size) around each encoder call; every tensor argument whose
    first dimension is the batch is sliced per group (hidden states, the attention mask, position ids).
    """

    def __init__(self, groups: dict[str, nn.Module]):
        super().__init__()
        self.groups = nn.ModuleDict(groups)
        self.routing: tuple[list[tuple[str, torch.LongTensor]], int] | None = None
        self.record_input = False
        self.recorded_input: torch.Tensor | None = None

    def forward(self, hidden_states, *args, **kwargs):
        if self.routing is None:
            raise RuntimeError(
                "This layer is task-specific (sharing='hierarchical'): call the MultiTaskModel, not its encoder alone."
            )
        if self.record_input:  # the output of the shared layers, for the task discriminator
            self.recorded_input = hidden_states
        groups, batch_size = self.routing
        if len(groups) == 1:
            return self.groups[groups[0][0]](hidden_states, *args, **kwargs)
        outputs = []
        for group, rows in groups:
            sub_args = [slice_rows(value, rows, batch_size) for value in args]
            sub_kwargs = {key: slice_rows(value, rows, batch_size) for key, value in kwargs.items()}
            outputs.append((rows, self.groups[group](slice_rows(hidden_states, rows, batch_size), *sub_args, **sub_kwargs)))
        first = outputs[0][1]
        if torch.is_tensor(first):
            return merge_rows(outputs, batch_size)
        return type(first)(  # a tuple output (older layer classes): merge its per-row tensors
            merge_rows([(rows, out[i]) for rows, out in outputs], batch_size)
            if torch.is_tensor(value) and value.dim() and value.shape[0] == len(outputs[0][0])
            else value
            for i, value in enumerate(first)
        )


@SHARING.register("hierarchical")
class HierarchicalSharing(SharingScheme):
    """Shared embeddings and lower layers, per-group copies of the upper layers; see the module docstring."""

    name = "hierarchical"
    Options = HierarchicalOptions
    unit_label = "upper-layer copy of group"

    @classmethod
    def check_options(cls, options: HierarchicalOptions, config):
        num_layers = getattr(config.encoder, "num_hidden_layers", None)
        n = options.num_shared_layers
        if n is None:
            raise ValueError(
                f"sharing='hierarchical' needs sharing_kwargs['num_shared_layers']: how many of the backbone's "
                f"{num_layers} layers all tasks share (the layers above are copied per task group)."
            )
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"`num_shared_layers` must be an integer >= 0, got {n!r}.")
        if num_layers is not None and n >= num_layers:
            raise ValueError(
                f"num_shared_layers={n} leaves no task-specific layer: the backbone has {num_layers} layers, so use "
                f"0..{num_layers - 1} (or sharing='hard' to share all {num_layers})."
            )
        options.groups = normalise_groups(options.groups, config.task_names)
        return options

    def __init__(self, config):
        super().__init__(config)
        self.task_to_group = {task: group for group, tasks in self.options.groups.items() for task in tasks}
        self.layers_path = ""

    def setup(self, model: SharedModel) -> None:
        self.layers_path, layers = find_layer_list(model.encoder)
        groups = list(self.options.groups)
        for index in range(self.options.num_shared_layers, len(layers)):
            original = layers[index]
            layers[index] = GroupRoutedLayer({group: copy.deepcopy(original) for group in groups})
        self._routed(model)[0].record_input = True
        self._key = re.compile(rf"^{re.escape(self.layers_path)}\.(\d+)\.groups\.([^.]+)\.")

    def _routed(self, model: SharedModel) -> list[GroupRoutedLayer]:
        layers = model.encoder.get_submodule(self.layers_path)
        return [layer for layer in layers if isinstance(layer, GroupRoutedLayer)]

    # ------------------------------------------------------------------ parameters

    def parameter_owner(self, name: str) -> tuple[str, str] | None:
        if not name.startswith("encoder."):
            return None
        match = self._key.match(name[len("encoder.") :])
        return ("group", match.group(2)) if match else None

    def task_units(self, task: str) -> set[str]:
        return {self.task_to_group[task]}

    def backbone_key(self, name: str) -> str | None:
        # Every group's copy of layer i starts from the backbone's layer i.
        return self._key.sub(lambda m: f"{self.layers_path}.{m.group(1)}.", name)

    # ------------------------------------------------------------------ tasks

    def add_task(self, model: SharedModel, spec, init_from: str | None, group: str | None) -> None:
        groups = {name: list(tasks) for name, tasks in self.options.groups.items()}
        if group is not None and group in groups:
            if init_from is not None:
                raise TaskError(f"Task {spec.name!r} joins group {group!r} and uses its layers: drop `init_from`.")
            groups[group].append(spec.name)
        else:
            group = group if group is not None else spec.name
            if group in groups:
                raise TaskError(f"A group named {group!r} exists already: pass group={group!r} to join it, or another name.")
            if not _GROUP_NAME.match(group):
                raise TaskError(f"Invalid group name {group!r}: use letters, digits, '_' or '-'.")
            source = self.task_to_group[init_from] if init_from is not None else next(iter(groups), None)
            if init_from is not None:
                model.config.task_index(init_from)
            if source is None:
                raise TaskError("This model has no task left to copy upper layers from: rebuild it from the backbone.")
            for layer in self._routed(model):
                layer.groups[group] = copy.deepcopy(layer.groups[source])
            groups[group] = [spec.name]
        self._set_groups(model, groups)

    def remove_task(self, model: SharedModel, name: str) -> None:
        group = self.task_to_group[name]
        groups = {g: [t for t in tasks if t != name] for g, tasks in self.options.groups.items()}
        if not groups[group]:
            del groups[group]
            for layer in self._routed(model):
                del layer.groups[group]
        self._set_groups(model, groups)

    def _set_groups(self, model: SharedModel, groups: dict[str, list[str]]) -> None:
        self.options.groups = groups
        self.task_to_group = {task: group for group, tasks in groups.items() for task in tasks}
        model.config.sharing_kwargs = {**model.config.sharing_kwargs, "groups": groups}

    # ------------------------------------------------------------------ forward

    def encode(self, model: SharedModel, task_ids, encoder_inputs) -> EncodedBatch:
        names = model.config.task_names
        row_groups = [self.task_to_group[names[i]] for i in task_ids.tolist()]
        routed = self._routed(model)
        wants_layers = encoder_inputs.get("output_hidden_states") or encoder_inputs.get("output_attentions")
        if wants_layers and len(set(row_groups)) > 1:
            groups = rows_by_key(row_groups, task_ids.device)
            shared_pieces = []

            def run(group, inputs):
                rows = dict(groups)[group]
                with _routing(routed, [(group, torch.arange(len(rows), device=rows.device))], len(rows)):
                    out = model.encoder(**inputs)
                    shared_pieces.append((rows, routed[0].recorded_input))
                return out

            outputs = run_encoder_by_rows(run, groups, encoder_inputs)
            shared = merge_rows(shared_pieces, len(row_groups))
        else:
            captured = {}

            @contextlib.contextmanager
            def route(keys, unpack):
                with _routing(routed, rows_by_key(keys, task_ids.device), len(keys)):
                    yield
                    captured["shared"] = unpack(routed[0].recorded_input)

            outputs = run_encoder_padding_free(
                model.encoder, encoder_inputs, model.config.encoder_packing, model.config.encoder_length_buckets,
                row_groups, route,
            )
            shared = captured["shared"]
        return EncodedBatch(hidden_states=outputs.last_hidden_state, shared_hidden_states=shared, encoder_outputs=outputs)


def normalise_groups(groups: Any, task_names: list[str]) -> dict[str, list[str]]:
    """`{group: [tasks]}` covering every task exactly once (ungrouped tasks alone, in a group named after them)."""
    if groups is None:
        groups = {}
    elif isinstance(groups, (list, tuple)):
        if not all(isinstance(g, (list, tuple)) for g in groups):
            raise ValueError(f"Hierarchical `groups` as a list is a list of task lists, e.g. [['a', 'b'], ['c']]; got {groups!r}.")
        groups = {f"group_{i}": list(g) for i, g in enumerate(groups)}
    elif not isinstance(groups, dict):
        raise ValueError(f"Hierarchical `groups` is {{name: [tasks]}} or [[tasks], ...], got {type(groups).__name__}.")
    seen: dict[str, str] = {}
    result: dict[str, list[str]] = {}
    for name, tasks in groups.items():
        if not isinstance(name, str) or not _GROUP_NAME.match(name):
            raise ValueError(f"Invalid group name {name!r}: use letters, digits, '_' or '-', starting with a letter or '_'.")
        if not isinstance(tasks, (list, tuple)) or not tasks:
            raise ValueError(f"Group {name!r} must list at least one task, got {tasks!r}.")
        for task in tasks:
            if task not in task_names:
                raise TaskError(
                    f"Group {name!r} names task {task!r}, which does not exist. This model's tasks: "
                    f"{', '.join(task_names) or '(none)'}."
                )
            if task in seen:
                raise TaskError(f"Task {task!r} is in groups {seen[task]!r} and {name!r}: a task belongs to one group.")
            seen[task] = name
        result[name] = list(tasks)
    for task in task_names:
        if task not in seen:
            if task in result:
                raise ValueError(f"Task {task!r} is in no group, but a group is named {task!r}: rename that group.")
            result[task] = [task]
    return result


@contextlib.contextmanager
def _routing(layers: list[GroupRoutedLayer], groups, batch_size: int):
    for layer in layers:
        layer.routing = (groups, batch_size)
    try:
        yield
    finally:
        for layer in layers:
            layer.routing = None
            layer.recorded_input = None
