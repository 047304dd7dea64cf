"""GradNorm: tune task weights so each task's weighted gradient norm matches its relative training rate."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._utils import adam_update_, check_number, present_tasks
from .base import WEIGHTINGS, GradientWeighting


class GradNormRule:
    """GradNorm's weights and their update, shared by the parameter-level (`gradnorm`) and the representation-level
    (`gradnorm_rep`) strategy: the subclass measures each present task's gradient norm ‖g_i‖, `record` adds the
    step's ∂L_grad/∂w, and `on_step_end` takes one Adam step on w, keeps it positive and renormalises Σ w_i = K over
    the tasks present. All state is in buffers (exact resume)."""

    min_weight = 1e-3

    def _init_gradnorm(self, alpha: float, lr: float) -> None:
        self.alpha = check_number(self.name, "alpha", alpha, low=0.0, fix="Use α >= 0 (paper: 1.5).")
        self.lr = check_number(self.name, "lr", lr, low=0.0, strict=True, fix="Use a positive rate (e.g. 0.025).")
        k = len(self.task_names)
        self.register_buffer("weight", torch.ones(k))
        self.register_buffer("initial_loss", torch.ones(k))
        self.register_buffer("initial_seen", torch.zeros(k, dtype=torch.bool))
        self.register_buffer("pending_grad", torch.zeros(k))
        self.register_buffer("pending_mask", torch.zeros(k, dtype=torch.bool))
        self.register_buffer("exp_avg", torch.zeros(k))
        self.register_buffer("exp_avg_sq", torch.zeros(k))
        self.register_buffer("adam_step", torch.zeros(k))

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.weight.tolist()))

    def record(self, index: list[int], norms: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Add ∂L_grad/∂w of the tasks at `index` (gradient norms `norms`, losses `losses`); returns their weights."""
        losses = losses.to(self.weight)
        new = ~self.initial_seen[index]
        self.initial_loss[index] = torch.where(new, losses, self.initial_loss[index])
        self.initial_seen[index] = True
        weight = self.weight[index]
        norms = norms.to(weight)
        rate = losses / self.initial_loss[index].clamp(min=1e-12)
        relative_rate = rate / rate.mean().clamp(min=1e-12)
        grad_norms = weight * norms
        target = grad_norms.mean() * relative_rate**self.alpha
        self.pending_grad[index] += torch.sign(grad_norms - target) * norms
        self.pending_mask[index] = True
        return weight

    def on_step_end(self, task_losses: dict[str, float]) -> None:
        self._check_tasks(task_losses)
        mask = self.pending_mask.clone()
        if not bool(mask.any()):
            return
        total_before = self.weight[mask].sum()
        adam_update_(self.weight, self.pending_grad, self.exp_avg, self.exp_avg_sq, self.adam_step, mask, lr=self.lr)
        self.weight.clamp_(min=self.min_weight)
        self.weight[mask] *= total_before / self.weight[mask].sum()
        self.pending_grad.zero_()
        self.pending_mask.zero_()


@WEIGHTINGS.register("gradnorm")
class GradNormWeighting(GradNormRule, GradientWeighting):
    r"""GradNorm of Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
    Balancing in Deep Multitask Networks", ICML 2018, [arXiv:1711.02257](https://arxiv.org/abs/1711.02257).

    With g_i the gradient of task i's loss w.r.t. the shared parameters and weights w_i (initially 1, Σ w_i = K):

        G_i = w_i ‖g_i‖,   r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0)),   target_i = mean_j(G_j) · r_i^α
        L_grad = Σ_i |G_i − target_i|  (target held constant),   ∂L_grad/∂w_i = sign(G_i − target_i) · ‖g_i‖

    The step's update is Σ_i w_i g_i (and each head gets its own gradient times w_i); w then takes one step on
    ∂L_grad/∂w, is kept positive and renormalised to Σ w_i = K. L_i(0) is the loss at the first step where task i
    appears.

    Args:
        task_names: every task of the model.
        alpha (`float`, defaults to 1.5): restoring force α (the paper's value for NYUv2; 0 equalises gradient norms).
        lr (`float`, defaults to 0.025): learning rate of the weights' own Adam.

    Deviations from the paper:
    - G_i is the norm over *all* the shared parameters the trainer hands us, not the last shared layer only (the
      trainer computes full per-task gradients anyway, for K backward passes). The paper's cheap variant, norms
      where the tasks leave the shared network and one backward pass through it, is `gradnorm_rep`.
    - The weights are updated by their own Adam instead of the network's optimizer. ∂L_grad/∂w_i is ±‖g_i‖, whose
      scale (1e-2 to 1e2 for a BERT encoder) a fixed plain-SGD rate cannot fit; Adam makes each step move a weight by
      about `lr` whatever that scale, so 0.025 lets weights of order 1 rebalance within tens of steps without
      oscillating wildly (the rate FAMO also uses for its task logits). The update is applied once per optimizer
      step, in `on_step_end`, summing the w-gradients of every `combine_gradients` call of the step (gradient
      accumulation), so the shared parameters and the heads of one step use the same weights.

    Missing tasks: r_i, the mean G and the renormalisation run over the tasks present; absent tasks keep their weight
    (the present ones are renormalised to keep their sum). All state is in buffers (exact resume).
    """

    name = "gradnorm"

    def __init__(self, task_names: Sequence[str], alpha: float = 1.5, lr: float = 0.025):
        super().__init__(task_names)
        self._init_gradnorm(alpha, lr)

    def combine_gradients(
        self, task_gradients: dict[str, torch.Tensor], task_losses: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        self._check_tasks(task_gradients)
        self._check_tasks(task_losses)
        names, index = present_tasks(self.task_names, task_gradients)
        if not names:
            raise ValueError("Weighting 'gradnorm' got no task gradients: pass at least one task.")
        missing = [name for name in names if name not in task_losses]
        if missing:
            raise ValueError(f"Weighting 'gradnorm' needs the loss of every task with a gradient; missing {missing}.")
        losses = torch.tensor([float(task_losses[name]) for name in names], dtype=self.weight.dtype)
        norms = torch.stack([task_gradients[name].float().norm() for name in names])
        weight = self.record(index, norms, losses)
        combined = torch.zeros_like(task_gradients[names[0]])
        for name, w in zip(names, weight.tolist()):
            combined.add_(task_gradients[name], alpha=w)
        return combined
