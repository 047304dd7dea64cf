"""Non-finite losses and gradients: found before they reach the weights, then skipped or reported.

`MultiTaskTrainingArguments(non_finite_loss=...)` chooses what happens when a task's loss, an auxiliary loss
(adversarial, orthogonality) or the step's gradient is NaN or infinite:

- `"error"` (default): stop with a [`NonFiniteLossError`] naming the task(s) and the optimizer step. Under several
  processes every process stops with it (no process is left waiting in a collective).
- `"skip"`: the non-finite losses are left out of the backward pass, and the whole optimizer step is dropped on every
  process: all gradients (model and learnable task weights) are cleared before `optimizer.step()`, the weighting
  strategy's state is restored to what it was when the step began and its step hook is not called. A warning names
  the task(s) and the step, and the training logs count `skipped_steps`. The step still counts: `global_step` and
  the learning-rate schedule advance, only its update is dropped.

Gradients are checked too, before `optimizer.step()`: a NaN/inf gradient with finite losses (an overflow in the
backward pass) is handled the same way. The model's gradients are judged by the norm Trainer has just taken for
clipping (no second pass over them); learnable task weights outside the model by their own. With an fp16
`GradScaler` that check is left to the scaler.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor

from ..errors import HfMtlError


class NonFiniteLossError(HfMtlError):
    """A task's loss (or the step's gradient) became NaN or infinite (with `non_finite_loss="error"`)."""


def split_finite(
    task_losses: dict[str, torch.Tensor], auxiliary_losses: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, float]]:
    """`(finite task losses, finite auxiliary losses, {name: value} of the non-finite ones)`.

    Auxiliary names are reported as `"<name> (auxiliary)"`. One device sync for all the losses of a micro-batch.
    """
    named = [(name, loss) for name, loss in task_losses.items()]
    named += [(f"{name} (auxiliary)", loss) for name, loss in auxiliary_losses.items()]
    if not named:
        return task_losses, auxiliary_losses, {}
    finite = torch.stack([torch.isfinite(loss.detach()).all() for _, loss in named]).tolist()
    if all(finite):
        return task_losses, auxiliary_losses, {}
    bad = {name: float(loss.detach().float().mean()) for (name, loss), ok in zip(named, finite) if not ok}
    tasks = {name: loss for name, loss in task_losses.items() if name not in bad}
    auxiliary = {name: loss for name, loss in auxiliary_losses.items() if f"{name} (auxiliary)" not in bad}
    return tasks, auxiliary, bad


def norm_is_finite(norm) -> bool:
    """Whether a gradient norm (a float, a tensor or a sharded DTensor) is finite."""
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return bool(torch.isfinite(torch.as_tensor(norm)))


def gradients_are_finite(parameters) -> bool:
    """Whether the gradient norm over every existing gradient is finite (one device sync). The fused norm kernels
    are what Trainer's own gradient clipping uses, and far faster on CPU than an element-wise `isfinite` pass."""
    grads = [p.grad for p in parameters if p.grad is not None]
    # Under FSDP the model's gradients are sharded DTensors and the task weights' are plain tensors: one norm each.
    sharded = [g for g in grads if isinstance(g, DTensor)]
    plain = [g for g in grads if not isinstance(g, DTensor)]
    for group in (sharded, plain):
        if group and not norm_is_finite(torch.nn.utils.get_total_norm(group, norm_type=2.0)):
            return False
    return True


def non_finite_message(bad: dict[str, float], step: int, bad_gradient: bool = False, elsewhere: bool = False) -> str:
    """The error text: what was not finite, at which optimizer step, and what to do about it."""
    if bad:
        what = f"Non-finite loss for task(s) {sorted(bad)} at step {step} (values: {[bad[n] for n in sorted(bad)]})"
    elif elsewhere:
        what = f"Non-finite loss on another process at step {step} (its log names the task)"
    else:
        what = f"Non-finite gradient at step {step} although every loss was finite (an overflow in the backward pass)"
    return (
        f"{what}. Lower the learning rate, check the data of these tasks (e.g. extreme regression targets), enable "
        "gradient clipping (max_grad_norm), or set non_finite_loss='skip' to drop such steps."
        + (" The gradient of the step was not finite either." if bad_gradient and bad else "")
    )
