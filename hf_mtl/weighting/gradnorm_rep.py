"""GradNorm with the gradient norms measured where the tasks leave the shared encoder: one backward pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from ..utils.distributed import is_distributed
from ._utils import check_representation, present_tasks, stack_losses
from .base import WEIGHTINGS, LossWeighting
from .gradnorm import GradNormRule


@WEIGHTINGS.register("gradnorm_rep")
class GradNormRepresentationWeighting(GradNormRule, LossWeighting):
    r"""GradNorm (Chen et al., ICML 2018, [arXiv:1711.02257](https://arxiv.org/abs/1711.02257)) as the paper runs it
    to save compute: the gradient norms are taken on the last shared part of the network rather than on all of it.
    Here that is the encoder's output h, the hidden states the heads read (LibMTL's `rep_grad`), so

        G_i = w_i ‖∇_h L_i‖,   r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0)),   target_i = mean_j(G_j) · r_i^α

    and the weights move exactly as in `gradnorm` (their own Adam on ∂L_grad/∂w, positive, Σ w_i = K, once per
    optimizer step). The loss is Σ_i w_i L_i: one backward pass through the encoder, plus one small backward per task
    through its head only to measure ‖∇_h L_i‖. `gradnorm` instead takes one full backward per task (K passes)
    and norms over every shared parameter; the two differ in what they measure, not in the rule.

    Needs mixed batches (every task in each step, as GradNorm's relative rates compare tasks of one step). Several
    processes: each process's squared norms and losses are summed over processes before the weights are taken, so
    every process uses the same weights (the losses as the mean over the processes that saw the task).

    Args:
        task_names: every task of the model.
        alpha (`float`, defaults to 1.5): restoring force α (the paper's value for NYUv2; 0 equalises gradient norms).
        lr (`float`, defaults to 0.025): learning rate of the weights' own Adam.
    """

    name = "gradnorm_rep"
    needs_representation = True
    needs_all_tasks_per_step = True

    def __init__(self, task_names: Sequence[str], alpha: float = 1.5, lr: float = 0.025):
        super().__init__(task_names)
        self._init_gradnorm(alpha, lr)

    def skip_micro_batch(self, device: torch.device | str = "cpu") -> None:
        """No finite task loss on this process: enter the all-reduce the other processes enter in `combine`."""
        if is_distributed():
            dist.all_reduce(torch.zeros(3 * len(self.task_names), device=device))

    def combine(self, task_losses: dict[str, torch.Tensor], representation: torch.Tensor | None = None) -> torch.Tensor:
        self._check_tasks(task_losses)
        names, index = present_tasks(self.task_names, task_losses)
        losses = stack_losses(self.name, names, task_losses)
        check_representation(self.name, representation)
        k = len(self.task_names)
        measured = torch.zeros(3 * k, device=losses.device, dtype=torch.float32)  # squared norms, losses, counts
        for name, i, loss in zip(names, index, losses):
            (grad,) = torch.autograd.grad(task_losses[name], representation, retain_graph=True, allow_unused=True)
            if grad is not None:
                measured[i] = grad.detach().float().pow(2).sum()
            measured[k + i] = loss.detach().float()
            measured[2 * k + i] = 1.0
        if is_distributed():
            dist.all_reduce(measured)
        seen = measured[2 * k :] > 0
        everywhere = [i for i in range(k) if bool(seen[i])]
        norms = measured[:k][everywhere].sqrt()
        mean_losses = measured[k : 2 * k][everywhere] / measured[2 * k :][everywhere]
        weight = self.record(everywhere, norms, mean_losses)
        by_task = dict(zip(everywhere, weight.tolist()))
        return sum(by_task[i] * losses[j] for j, i in enumerate(index))
