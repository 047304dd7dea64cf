"""Transfer to new tasks: freeze rules (`apply_freeze`) and
`learn_new_task`, which adds a task to a trained model and reports the old tasks' metrics before and after."""

from .freezing import FREEZE_RULES, FreezeError, FreezeReport, apply_freeze, encoder_layers, lora_pattern
from .learn import TransferReport, TransferResult, learn_new_task


__all__ = [
    "FREEZE_RULES",
    "FreezeError",
    "FreezeReport",
    "TransferReport",
    "TransferResult",
    "apply_freeze",
    "encoder_layers",
    "learn_new_task",
    "lora_pattern",
]
