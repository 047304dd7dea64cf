"""What the trainer's callbacks read of the trainer that adds them (`MultiTaskTrainer` satisfies it).

Typing the callbacks on this protocol instead of `MultiTaskTrainer` keeps them below the trainer module: the trainer
imports its callbacks, never the other way round.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn
from transformers import TrainingArguments


class TrainerProtocol(Protocol):
    args: TrainingArguments
    model: nn.Module
    optimizer: Any
    accelerator: Any
    data_collator: Any
    batch_sampler: Any
    weighting: Any
    loss_tracker: Any
    step_grad_norm: Any  # Trainer's norm of the model's gradients at this optimizer step, or None
    step_reevaluation: Any
    task_train_datasets: dict[str, Any]

    def gradient_reversal_coefficient(self) -> float: ...

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]: ...
