"""Choosing what trains when a multi-task model learns a new task: freeze rules, a registry of them, and a report.

A freeze rule is a short string, the same in Python, YAML and on the command line:

| rule | what still trains afterwards |
|---|---|
| `none` | everything (full fine-tuning) |
| `head` | the heads of the target tasks only (linear probing + the head's dense block) |
| `top-k:N` | the top `N` encoder layers and the target tasks' heads |
| `adapters` | the target tasks' LoRA adapters (peft names `lora_A.<task>` / `lora_B.<task>`) and their heads |
| `layers:0-3` / `layers:0,5` | everything except those encoder layers (by index; ranges are end-inclusive) |
| `embeddings` | everything except the encoder's embeddings |
| `pattern:REGEX` | everything except the parameters whose name matches `REGEX` (`re.search`) |

Rules compose: `apply_freeze(model, ["top-k:2", "pattern:LayerNorm"])` trains the top two layers without their
LayerNorms. Each rule can only freeze more, never unfreeze, so the order does not matter. A rule that selects
nothing (a pattern matching no parameter, `adapters` on a model without LoRA) raises, naming the rule and the fix:
silently training everything is the one outcome a user who asked to freeze never wants.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from torch import nn

from ..errors import HfMtlError, TaskError
from ..utils.registry import Registry


class FreezeError(HfMtlError):
    """A freeze rule is malformed or selects nothing."""


# A rule maps (model, argument, target tasks) to the names of the parameters it FREEZES.
FreezeRule = Callable[[nn.Module, "str | None", Sequence[str]], set[str]]
FREEZE_RULES: Registry[FreezeRule] = Registry("freeze rule")

# The block list of the common backbones (BERT/RoBERTa/ELECTRA `encoder.layer`, DistilBERT `transformer.layer`,
# GPT-2 `h`, T5 `block`, Llama `layers`): the longest of these ModuleLists is "the layers".
_LAYER_LIST_NAMES = ("layer", "layers", "h", "block", "blocks")


def lora_pattern(task: str) -> str:
    """Regex of the parameters of task `task`'s LoRA adapter, as peft names them (`...query.lora_A.<task>.weight`).

    Per-task adapters use the task name as the peft adapter name, so this pattern is the contract between
    the `adapters` rule and the LoRA sharing scheme.
    """
    return rf"\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)\.{re.escape(task)}(\.|$)"


def encoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The encoder's list of transformer blocks and its qualified name (e.g. `encoder.encoder.layer`)."""
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in _LAYER_LIST_NAMES and name.startswith("encoder.")
    ]
    if not candidates:
        raise FreezeError(
            "Could not find the encoder's layer list (a ModuleList named one of "
            f"{', '.join(_LAYER_LIST_NAMES)} under `encoder.`); use `pattern:REGEX` rules for this backbone."
        )
    return max(candidates, key=lambda item: len(item[1]))


def _layer_index(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix + "."):
        return None
    return int(name[len(prefix) + 1 :].split(".", 1)[0])


def _names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters()]


def _head_names(model: nn.Module, tasks: Sequence[str]) -> set[str]:
    return {name for name in _names(model) if any(name.startswith(f"heads.{task}.") for task in tasks)}


@FREEZE_RULES.register("none")
def _freeze_none(model, argument, tasks):
    return set()


@FREEZE_RULES.register("head")
def _freeze_all_but_heads(model, argument, tasks):
    return set(_names(model)) - _head_names(model, tasks)


@FREEZE_RULES.register("top-k")
def _freeze_all_but_top_layers(model, argument, tasks):
    prefix, layers = encoder_layers(model)
    try:
        k = int(argument)
    except (TypeError, ValueError):
        raise FreezeError(f"`top-k` needs a number of layers, e.g. 'top-k:2'; got {argument!r}.") from None
    if not 1 <= k <= len(layers):
        raise FreezeError(
            f"'top-k:{argument}': the encoder has {len(layers)} layers, so k must be in 1..{len(layers)} "
            "(use 'head' to train no layer, 'none' to train all)."
        )
    keep = _head_names(model, tasks) | {
        name for name in _names(model) if (index := _layer_index(name, prefix)) is not None and index >= len(layers) - k
    }
    return set(_names(model)) - keep


@FREEZE_RULES.register("adapters")
def _freeze_all_but_adapters(model, argument, tasks):
    patterns = [re.compile(lora_pattern(task)) for task in tasks]
    adapters = {name for name in _names(model) if any(p.search(name) for p in patterns)}
    if not adapters:
        any_lora = sorted({m.group(0) for name in _names(model) if (m := re.search(r"lora_\w+\.[^.]+", name))})
        found = f"It has LoRA parameters for: {', '.join(any_lora[:6])}." if any_lora else "It has no LoRA parameters."
        raise FreezeError(
            f"'adapters' found no LoRA adapter of task(s) {list(tasks)} in the model. {found} Build the model with "
            "per-task LoRA adapters (config `sharing='lora'`), or choose 'head' / 'top-k:N'."
        )
    return set(_names(model)) - adapters - _head_names(model, tasks)


@FREEZE_RULES.register("layers")
def _freeze_layers(model, argument, tasks):
    prefix, layers = encoder_layers(model)
    indices = parse_indices(argument, len(layers))
    return {name for name in _names(model) if _layer_index(name, prefix) in indices}


@FREEZE_RULES.register("embeddings")
def _freeze_embeddings(model, argument, tasks):
    # The task embedding (hf_mtl.heads.task_embedding) is added to the input embeddings: it belongs to this group.
    selected = {name for name in _names(model) if re.match(r"encoder\.(.*\.)?embeddings\.|task_embedding\.", name)}
    if not selected:
        raise FreezeError("'embeddings' matched no parameter under `encoder.embeddings`; use 'pattern:REGEX'.")
    return selected


@FREEZE_RULES.register("pattern")
def _freeze_pattern(model, argument, tasks):
    if not argument:
        raise FreezeError("`pattern` needs a regular expression, e.g. 'pattern:embeddings|layer\\.[0-3]\\.'.")
    try:
        regex = re.compile(argument)
    except re.error as error:
        raise FreezeError(f"'pattern:{argument}' is not a valid regular expression ({error}).") from None
    selected = {name for name in _names(model) if regex.search(name)}
    if not selected:
        sample = ", ".join(_names(model)[:4])
        raise FreezeError(
            f"Freeze pattern {argument!r} matches no parameter. Parameter names look like: {sample}, ... "
            "(list them with `[n for n, _ in model.named_parameters()]`)."
        )
    return selected


def parse_indices(argument: str | None, num_layers: int) -> set[int]:
    """`"0-3"` -> {0, 1, 2, 3}; `"0,5"` -> {0, 5}; `"-1"` is the last layer. Ranges include their end."""
    if not argument:
        raise FreezeError("`layers` needs layer indices, e.g. 'layers:0-3' or 'layers:0,2'.")
    indices = set()
    for part in argument.split(","):
        part = part.strip()
        if re.fullmatch(r"\d+-\d+", part):
            start, end = (int(x) for x in part.split("-"))
            if start > end:
                raise FreezeError(f"Layer range {part!r} is reversed; write it as '{end}-{start}'.")
            values = range(start, end + 1)
        elif re.fullmatch(r"-?\d+", part):
            values = [int(part)]
        else:
            raise FreezeError(f"Bad layer index {part!r} in 'layers:{argument}'; use integers and ranges like 0-3.")
        for value in values:
            index = value + num_layers if value < 0 else value
            if not 0 <= index < num_layers:
                raise FreezeError(f"Layer {value} does not exist: the encoder has {num_layers} layers (0..{num_layers - 1}).")
            indices.add(index)
    return indices


def parse_rule(rule: str) -> tuple[str, str | None]:
    """`"top-k:2"` -> `("top-k", "2")`; a clear error for an unknown rule."""
    if not isinstance(rule, str) or not rule.strip():
        raise FreezeError(f"A freeze rule is a non-empty string such as 'head' or 'top-k:2', got {rule!r}.")
    key, _, argument = rule.strip().partition(":")
    key = key.strip().lower()
    if key not in FREEZE_RULES:
        raise FreezeError(FREEZE_RULES.unknown_message(key) + " Rules with an argument: top-k:N, layers:0-3, pattern:REGEX.")
    return key, (argument if _ else None)


@dataclass
class FreezeReport:
    """What `apply_freeze` left trainable.

    Attributes:
        rules: the rules applied, as given.
        trainable_parameters / total_parameters: counts of scalar parameters.
        frozen: names of the frozen parameter tensors; trainable: names of the trainable ones.
    """

    rules: list[str]
    trainable_parameters: int
    total_parameters: int
    frozen: list[str] = field(default_factory=list)
    trainable: list[str] = field(default_factory=list)

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_parameters / max(self.total_parameters, 1)

    def summary(self) -> str:
        """One line in the style of peft's `print_trainable_parameters`."""
        return (
            f"trainable params: {self.trainable_parameters:,} || all params: {self.total_parameters:,} || "
            f"trainable%: {100 * self.trainable_fraction:.4f} (freeze: {', '.join(self.rules) or 'none'})"
        )

    def groups(self) -> dict[str, int]:
        """Trainable tensors per group (`encoder.embeddings`, `encoder layer 5`, `heads.ner`, ...), for reports."""
        counts: dict[str, int] = {}
        for name in self.trainable:
            parts = name.split(".")
            if parts[0] == "heads":
                group = ".".join(parts[:2])
            elif "lora_" in name:
                group = "lora adapters"
            else:
                match = re.search(r"\.(layer|layers|h|block|blocks)\.(\d+)\.", name)
                group = f"encoder layer {match.group(2)}" if match else ".".join(parts[:2])
            counts[group] = counts.get(group, 0) + 1
        return counts

    def to_dict(self) -> dict:
        return {
            "rules": self.rules,
            "trainable_parameters": self.trainable_parameters,
            "total_parameters": self.total_parameters,
            "trainable_fraction": self.trainable_fraction,
            "trainable_groups": self.groups(),
            "frozen_tensors": len(self.frozen),
        }


def apply_freeze(model: nn.Module, rules: str | Iterable[str] | None, tasks: Sequence[str] | None = None) -> FreezeReport:
    r"""
    Set `requires_grad` on a [`MultiTaskModel`] by freeze rules (see the module docstring) and report the result.

    Every parameter first becomes trainable, then each rule freezes its selection, so calling this twice with
    different rules gives the second rule's result (not a mix).

    Args:
        model ([`MultiTaskModel`]): the model (any module whose shared part lives under `encoder.` and whose
            heads live under `heads.<task>.`).
        rules (`str` or `list[str]`): e.g. `"head"`, `"top-k:2"`, `["adapters"]`, `["layers:0-3", "embeddings"]`.
            `None` or `[]` freezes nothing.
        tasks (`list[str]`, *optional*): the target tasks whose heads (and adapters) `head`, `top-k` and `adapters`
            keep trainable. Defaults to the model's last task (the one `add_task` appended).

    Returns:
        [`FreezeReport`]: trainable and total parameter counts, and the frozen tensor names.

    Example:

    ```python
    >>> model.add_task({"name": "intent", "type": "sequence_classification", "labels": labels})
    >>> print(apply_freeze(model, "top-k:2").summary())
    trainable params: 3,697,944 || all params: 22,862,808 || trainable%: 16.1746 (freeze: top-k:2)
    ```
    """
    rules = [rules] if isinstance(rules, str) else list(rules or [])
    task_names = list(getattr(getattr(model, "config", None), "task_names", []) or [])
    if tasks is None:
        tasks = task_names[-1:]
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [task for task in tasks if task_names and task not in task_names]
    if unknown:
        raise TaskError(f"Unknown task(s) {unknown} to keep trainable. This model's tasks are: {', '.join(task_names)}.")
    frozen: set[str] = set()
    for rule in rules:
        key, argument = parse_rule(rule)
        frozen |= FREEZE_RULES.get(key)(model, argument, tasks)
    trainable_count = total = 0
    trainable_names, frozen_names = [], []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen)
        total += parameter.numel()
        if parameter.requires_grad:
            trainable_count += parameter.numel()
            trainable_names.append(name)
        else:
            frozen_names.append(name)
    if rules and trainable_count == 0:
        raise FreezeError(f"Freeze rules {rules} froze every parameter: nothing would train. Drop a rule or widen `tasks`.")
    return FreezeReport(rules, trainable_count, total, frozen_names, trainable_names)
