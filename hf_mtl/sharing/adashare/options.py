"""The options of `sharing="adashare"` and their validation, including a fixed policy given by hand or loaded with a
saved model; apart from the scheme so the config can be checked without building anything."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ...errors import TaskError
from ...utils.input_checks import check_names_every_task


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


def check_adashare_options(options: AdaShareOptions, config) -> AdaShareOptions:
    """Validate the options against the config's tasks and backbone; a given `policy` comes back normalised."""
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
