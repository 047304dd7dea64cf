"""Transfer to new tasks: freeze rules (`apply_freeze`), rehearsal sampling (`RehearsalSampler`), and
`learn_new_task`, which adds a task to a trained model and reports the old tasks' metrics before and after."""

from .freezing import FREEZE_RULES, FreezeError, FreezeReport, apply_freeze, encoder_layers, lora_pattern
from .learn import TransferReport, TransferResult, learn_new_task
from .rehearsal import FixedSampler, RehearsalSampler


__all__ = [
    "FREEZE_RULES",
    "FixedSampler",
    "FreezeError",
    "FreezeReport",
    "RehearsalSampler",
    "TransferReport",
    "TransferResult",
    "apply_freeze",
    "encoder_layers",
    "learn_new_task",
    "lora_pattern",
]
