"""One backward pass per task, for the strategies that combine task gradients (GradNorm, PCGrad, CAGrad).

Only the shared parameters get per-task gradients; the strategy turns them into one update. Task-specific
parameters (heads) get their own task's gradient, scaled by the strategy's weight for that task; auxiliary losses
(adversarial, orthogonality) add their plain gradient to every parameter they reach.

Under several processes the step runs outside DDP's reducer (the caller wraps the forward in `no_sync`): the
per-task gradients are all-reduced first (a row-weighted mean over the processes that saw the task), so every process
combines the same gradients and the strategy's state stays identical everywhere.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..weighting import GradientWeighting


def _flatten(grads: list[torch.Tensor | None], params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _mean_over_rows(stacked: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Row-weighted mean over processes (one tensor row per task): each process's per-task mean counts as many
    times as it had rows of that task, so N processes equal one process holding all their rows."""
    stacked = stacked * rows.unsqueeze(-1)
    dist.all_reduce(stacked)
    dist.all_reduce(rows)
    return stacked / rows.clamp(min=1).unsqueeze(-1)


def accumulate_task_gradients(
    task_losses: dict[str, torch.Tensor],
    auxiliary_loss: torch.Tensor | None,
    shared: list[nn.Parameter],
    specific: list[nn.Parameter],
    strategy: GradientWeighting,
    task_names: list[str],
    scale: float,
    task_rows: dict[str, int] | None = None,
) -> dict[str, float]:
    """Add this micro-batch's combined gradient (times `scale`, e.g. 1/accumulation steps) into `.grad`.

    `task_rows` (rows of each task in this micro-batch) weighs the processes' per-task gradients when they are
    averaged. Returns the (all-reduced) loss of each task present, for logging and the strategy's bookkeeping.
    """
    present = [name for name in task_names if name in task_losses]
    params = shared + specific
    per_task_shared, per_task_specific = {}, {}
    for name in present:
        grads = torch.autograd.grad(task_losses[name] * scale, params, retain_graph=True, allow_unused=True)
        per_task_shared[name] = _flatten(grads[: len(shared)], shared) if shared else torch.zeros(0)
        per_task_specific[name] = _flatten(grads[len(shared) :], specific) if specific else torch.zeros(0)
    aux_grad = None
    if auxiliary_loss is not None:
        grads = torch.autograd.grad(auxiliary_loss * scale, params, allow_unused=True)
        aux_grad = _flatten(list(grads), params)

    losses = {name: task_losses[name].detach().float() for name in present}
    if _is_distributed():
        device = params[0].device if params else torch.device("cpu")
        rows = task_rows or {}
        mask = torch.tensor([float(rows.get(name, 1)) if name in present else 0.0 for name in task_names], device=device)
        size_shared, size_specific = sum(p.numel() for p in shared), sum(p.numel() for p in specific)
        stacked = torch.zeros(len(task_names), size_shared + size_specific + 1, device=device)
        for i, name in enumerate(task_names):
            if name in present:
                stacked[i] = torch.cat([per_task_shared[name], per_task_specific[name], losses[name].reshape(1)])
        stacked = _mean_over_rows(stacked, mask)
        seen = mask > 0
        present = [name for i, name in enumerate(task_names) if seen[i]]
        per_task_shared = {n: stacked[task_names.index(n), :size_shared] for n in present}
        per_task_specific = {n: stacked[task_names.index(n), size_shared:-1] for n in present}
        losses = {n: stacked[task_names.index(n), -1] for n in present}
        if aux_grad is not None:
            dist.all_reduce(aux_grad)
            aux_grad /= dist.get_world_size()

    # No task left (every loss of the micro-batch was non-finite, and the step will be skipped): only the
    # collectives above had to run, so that the other processes do not wait.
    if shared and present:
        combined = strategy.combine_gradients(per_task_shared, losses)
        _add_into_grads(shared, combined)
    if specific and present:
        weights = strategy.weights()
        _add_into_grads(specific, sum(per_task_specific[n] * weights.get(n, 1.0) for n in present))
    if aux_grad is not None:
        _add_into_grads(params, aux_grad)
    return {name: float(value) for name, value in losses.items()}


def _add_into_grads(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        piece = flat[offset : offset + n].view_as(p).to(p.dtype)
        p.grad = piece.clone() if p.grad is None else p.grad.add_(piece)
        offset += n
