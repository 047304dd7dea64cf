"""One backward pass per task, for the strategies that combine task gradients (GradNorm, PCGrad, CAGrad).

Only the shared parameters get per-task gradients; the strategy turns them into one update. Task-specific
parameters (heads) get their own task's gradient, scaled by the strategy's weight for that task; auxiliary losses
(adversarial, orthogonality) add their plain gradient to every parameter they reach.

Under gradient accumulation the per-task gradients of the step's micro-batches are summed first and combined once at
the step's last micro-batch (`TaskGradientAccumulator`). Under several processes the step runs outside DDP's reducer
(the caller wraps the forward in `no_sync`): the per-task gradients are all-reduced first (a row-weighted mean over the
processes that saw the task), so every process combines the same gradients and the strategy's state stays identical
everywhere.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ..utils.distributed import is_distributed
from ..weighting import GradientWeighting


def _flatten(grads: list[torch.Tensor | None], params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def _mean_over_rows(stacked: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Row-weighted mean over processes (one tensor row per task): each process's per-task mean counts as many
    times as it had rows of that task, so N processes equal one process holding all their rows."""
    stacked = stacked * rows.unsqueeze(-1)
    dist.all_reduce(stacked)
    dist.all_reduce(rows)
    return stacked / rows.clamp(min=1).unsqueeze(-1)


class TaskGradientAccumulator:
    """Per-task gradients of the micro-batches of one optimizer step, summed row-weighted, so that the strategy
    combines them ONCE per step: 4 accumulated micro-batches of 2 rows give the update of one batch of 8 (and of 2
    processes x 4 rows), as for the loss weightings. Auxiliary gradients (adversarial, orthogonality) are summed
    as they come, already scaled by 1/accumulation steps like Trainer's own backward."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.shared: dict[str, torch.Tensor] = {}
        self.specific: dict[str, torch.Tensor] = {}
        self.loss: dict[str, torch.Tensor] = {}
        self.rows: dict[str, float] = {}
        self.auxiliary: torch.Tensor | None = None

    def add(self, task_losses: dict[str, torch.Tensor], auxiliary_loss: torch.Tensor | None, shared: list[nn.Parameter],
            specific: list[nn.Parameter], task_rows: dict[str, int], auxiliary_scale: float) -> dict[str, float]:
        """One backward per task present in this micro-batch; returns their (local) losses for logging."""
        params = shared + specific
        for name, loss in task_losses.items():
            rows = float(task_rows.get(name, 1))
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            for store, piece in ((self.shared, _flatten(grads[: len(shared)], shared) if shared else torch.zeros(0)),
                                 (self.specific, _flatten(grads[len(shared) :], specific) if specific else torch.zeros(0))):
                store[name] = piece * rows if name not in store else store[name].add_(piece, alpha=rows)
            self.loss[name] = self.loss.get(name, 0.0) + rows * loss.detach().float()
            self.rows[name] = self.rows.get(name, 0.0) + rows
        if auxiliary_loss is not None:
            grads = _flatten(list(torch.autograd.grad(auxiliary_loss * auxiliary_scale, params, allow_unused=True)), params)
            self.auxiliary = grads if self.auxiliary is None else self.auxiliary.add_(grads)
        return {name: float(loss.detach()) for name, loss in task_losses.items()}

    def apply(self, shared: list[nn.Parameter], specific: list[nn.Parameter], strategy: GradientWeighting,
              task_names: list[str], scale: float = 1.0) -> dict[str, float]:
        """At the step's last micro-batch: per-task means over the step's rows (row-weighted over processes too),
        combined by the strategy into `.grad` (times `scale`: the fp16 loss scale). Returns each task's mean loss.

        Under several processes every process enters the same collectives whatever its micro-batches held (a task
        or an auxiliary loss missing on one process is a zero row / a zero gradient there)."""
        params = shared + specific
        present = [name for name in task_names if name in self.rows]
        per_task_shared = {n: self.shared[n] / self.rows[n] for n in present}
        per_task_specific = {n: self.specific[n] / self.rows[n] for n in present}
        losses = {n: self.loss[n] / self.rows[n] for n in present}
        auxiliary = self.auxiliary
        if is_distributed():
            device = params[0].device if params else torch.device("cpu")
            mask = torch.tensor([self.rows.get(name, 0.0) for name in task_names], device=device)
            size_shared, size_specific = sum(p.numel() for p in shared), sum(p.numel() for p in specific)
            stacked = torch.zeros(len(task_names), size_shared + size_specific + 1, device=device)
            for i, name in enumerate(task_names):
                if name in present:
                    stacked[i] = torch.cat([per_task_shared[name], per_task_specific[name], losses[name].reshape(1)])
            stacked = _mean_over_rows(stacked, mask)
            present = [name for i, name in enumerate(task_names) if mask[i] > 0]
            per_task_shared = {n: stacked[task_names.index(n), :size_shared] for n in present}
            per_task_specific = {n: stacked[task_names.index(n), size_shared:-1] for n in present}
            losses = {n: stacked[task_names.index(n), -1] for n in present}
            has_auxiliary = torch.tensor([float(auxiliary is not None)], device=device)
            dist.all_reduce(has_auxiliary, op=dist.ReduceOp.MAX)
            if has_auxiliary.item() > 0:
                auxiliary = auxiliary if auxiliary is not None else torch.zeros(size_shared + size_specific, device=device)
                dist.all_reduce(auxiliary)
                auxiliary /= dist.get_world_size()
        # No task left (every loss of the step was non-finite, and the step will be skipped): only the collectives
        # above had to run, so that the other processes do not wait.
        if shared and present:
            combined = strategy.combine_gradients(per_task_shared, losses)
            _add_into_grads(shared, combined * scale)
        if specific and present:
            weights = strategy.weights()
            _add_into_grads(specific, sum(per_task_specific[n] * weights.get(n, 1.0) for n in present) * scale)
        if auxiliary is not None:
            _add_into_grads(params, auxiliary * scale)
        self.reset()
        return {name: float(value) for name, value in losses.items()}


def _add_into_grads(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        piece = flat[offset : offset + n].view_as(p).to(p.dtype)
        p.grad = piece.clone() if p.grad is None else p.grad.add_(piece)
        offset += n
