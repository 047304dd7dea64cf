"""Adversarial task discrimination on the shared representation (Liu, Qiu & Huang, ACL 2017, "Adversarial
Multi-task Learning for Text Classification", arXiv:1704.05742).

A discriminator learns to tell which task a row comes from using the shared encoder's pooled features; a
gradient-reversal layer (Ganin & Lempitsky, ICML 2015, arXiv:1409.7495) flips the gradient that reaches the
encoder, so the shared features become task-invariant while task-specific information lives in the heads (or the
private encoders of a shared-private model).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.coefficient * grad_output, None


def reverse_gradient(inputs: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by `-coefficient` backward."""
    return _ReverseGradient.apply(inputs, coefficient)


def ganin_coefficient(progress: float, gamma: float = 10.0) -> float:
    """λ_p = 2 / (1 + exp(-γ p)) − 1 for training progress p in [0, 1] (Ganin & Lempitsky 2015): 0 at the start,
    so the discriminator first learns, then rising to 1."""
    progress = min(max(progress, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class TaskDiscriminator(nn.Module):
    """Gradient reversal -> dense -> tanh -> dropout -> task logits, on pooled shared features.

    `coefficient` is the gradient-reversal strength; the trainer sets it every step from its schedule.
    """

    def __init__(self, hidden_size: int, num_tasks: int, dropout: float = 0.1):
        super().__init__()
        self.coefficient = 1.0
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_tasks)

    def forward(self, pooled_shared: torch.Tensor) -> torch.Tensor:
        x = reverse_gradient(pooled_shared, self.coefficient)
        return self.classifier(self.dropout(torch.tanh(self.dense(x))))

    def loss(self, pooled_shared: torch.Tensor, task_ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self(pooled_shared), task_ids)

    def resize(self, keep_rows: list[int | None], init_weights) -> None:
        """One output per task of `keep_rows` (old row indices in the new order; `None` = a new task, initialised by
        `init_weights`), after tasks were added or removed."""
        old = self.classifier
        new = nn.Linear(old.in_features, max(len(keep_rows), 1)).to(old.weight.device, old.weight.dtype)
        init_weights(new)
        with torch.no_grad():
            for new_row, old_row in enumerate(keep_rows):
                if old_row is not None:
                    new.weight[new_row] = old.weight[old_row]
                    new.bias[new_row] = old.bias[old_row]
        self.classifier = new
