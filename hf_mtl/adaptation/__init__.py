"""Adapting a trained multi-task model: `learn_new_task` adds a task and reports the old tasks' metrics before and
after (`NewTaskReport`), with freeze rules (`apply_freeze`); `few_shot` evaluates few-shot learning of a new task and
`meta/` meta-trains for it."""

from .freezing import FREEZE_RULES, FreezeError, FreezeReport, apply_freeze, encoder_layers, lora_pattern
from .new_task import NewTaskReport, NewTaskResult, learn_new_task


__all__ = [
    "FREEZE_RULES",
    "FreezeError",
    "FreezeReport",
    "NewTaskReport",
    "NewTaskResult",
    "apply_freeze",
    "encoder_layers",
    "learn_new_task",
    "lora_pattern",
]
