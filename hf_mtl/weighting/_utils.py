"""Numerical helpers shared by several strategies (kept out of `base.py`, which is the public contract)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import torch


def check_number(
    strategy: str, name: str, value, *, low: float | None = None, strict: bool = False, fix: str = ""
) -> float:
    """Validate a scalar hyperparameter; the error names the strategy, the argument, the value and the fix."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Weighting {strategy!r}: `{name}` must be a finite number, got {value!r}. {fix}".rstrip())
    if low is not None and (value < low or (strict and value == low)):
        raise ValueError(
            f"Weighting {strategy!r}: `{name}` must be {'>' if strict else '>='} {low}, got {value!r}. {fix}".rstrip()
        )
    return float(value)


def present_tasks(task_names: Sequence[str], task_values: Mapping) -> tuple[list[str], list[int]]:
    """Tasks present in a step, in the strategy's task order (so results never depend on dict order)."""
    present = [(name, i) for i, name in enumerate(task_names) if name in task_values]
    return [name for name, _ in present], [i for _, i in present]


def stack_losses(strategy: str, names: Sequence[str], task_losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Stack the scalar losses of `names` into a 1-D tensor, refusing empty steps and non-scalar losses."""
    if not names:
        raise ValueError(f"Weighting {strategy!r} got no task losses: pass a dict with at least one task.")
    for name in names:
        loss = task_losses[name]
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(
                f"Weighting {strategy!r}: the loss of task {name!r} must be a scalar tensor, got {shape}. "
                "Reduce it (e.g. `.mean()`) before weighting."
            )
    return torch.stack([task_losses[name].reshape(()) for name in names])


def check_representation(strategy: str, representation: torch.Tensor | None) -> None:
    """Strategies that measure task gradients at the representation need the hidden states the heads read."""
    if representation is None or not representation.requires_grad:
        raise ValueError(
            f"Weighting {strategy!r} needs the hidden states the heads read (`representation=`, the model "
            "output's `head_inputs` in training mode). MultiTaskTrainer passes them; call `combine(losses, "
            "representation=outputs.head_inputs)` when using the strategy by hand."
        )


def adam_update_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: torch.Tensor,
    mask: torch.Tensor,
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> None:
    """`torch.optim.Adam` (L2 weight decay, bias correction) on plain buffers, in place.

    `torch.optim.Adam` keeps Python numbers in its state dict and cannot be restored from tensors alone; this keeps
    every piece of state in the caller's buffers. Steps are counted per element and only elements in `mask` move, so
    a task absent from a step keeps its value and its moments.
    """
    grad = torch.where(mask, grad + weight_decay * param, torch.zeros_like(grad))
    step.add_(mask.to(step.dtype))
    beta1, beta2 = betas
    new_avg = exp_avg * beta1 + grad * (1 - beta1)
    new_avg_sq = exp_avg_sq * beta2 + grad * grad * (1 - beta2)
    safe_step = step.clamp(min=1)
    bias1 = 1 - beta1**safe_step
    bias2 = 1 - beta2**safe_step
    update = (lr / bias1) * new_avg / (new_avg_sq.sqrt() / bias2.sqrt() + eps)
    exp_avg.copy_(torch.where(mask, new_avg, exp_avg))
    exp_avg_sq.copy_(torch.where(mask, new_avg_sq, exp_avg_sq))
    param.sub_(torch.where(mask, update, torch.zeros_like(update)))


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of a 1-D tensor onto the probability simplex (sort-based, Duchi et al. 2008)."""
    u, _ = torch.sort(v, descending=True)
    cumulative = u.cumsum(0) - 1
    ks = torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)
    rho = int((u - cumulative / ks > 0).nonzero().max())
    theta = cumulative[rho] / (rho + 1)
    return (v - theta).clamp(min=0)
