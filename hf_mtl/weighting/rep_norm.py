"""Representation-gradient normalisation: no task of a mixed batch pushes the shared encoder much harder than the rest."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from ..utils.distributed import is_distributed
from ._utils import check_number, check_representation, present_tasks, stack_losses
from .base import WEIGHTINGS, LossWeighting


MODES = ("cap", "equal")


@WEIGHTINGS.register("rep_norm")
class RepresentationNormWeighting(LossWeighting):
    r"""Rescale each task's gradient *where it enters the shared encoder* (h, the hidden states the heads read) so that
no task's exceeds the typical task's; the heads keep their own, unscaled gradients:

        ∂/∂h ← Σ_i w_i · ∇_h L_i,   n_i = ‖∇_h L_i‖,
        mode="cap" (default):  w_i = min(1, median_j n_j / n_i)     (only tasks above the median are damped)
        mode="equal":          w_i = mean_j n_j / n_i               (every task sends the same norm)

    Why: when a step holds several tasks (`batching="mixed"`), their summed gradient is clipped and normalised as one,
    so a task whose loss has a large gradient decides the encoder's direction. Measured on the dev suite
    (`benchmarks/mixed_gradient_share.py`): STS-B's mean-squared error made 73-87 % of the summed encoder gradient,
    the two token taggers 1-4 %, and both taggers lost 2-7 F1 against their single-task runs. Equal norms at the
    representation give each task the same say over the encoder, whatever its loss's scale.

    Why only the encoder path: weighting the losses instead (w_i · L_i) also multiplies each head's gradient by a
    weight that jumps from step to step; on the dev suite (seed 1) that version of "equal" cost ATIS intent 4.4 points
    while the taggers gained. Why "cap" by default: "equal" also *amplifies* a task whose rows are already right (a
    tiny gradient, so a large weight: noise from a few rows pushed as hard as a real error signal); with the heads
    unscaled it still cost intent 1.2 points on seed 1. Capping at the median damps the dominating tasks and leaves
    the others as they are, which is what per-task batches do implicitly (each step's gradient is clipped alone).

    "equal" is GradNorm's target with α = 0 (Chen et al., "GradNorm", ICML 2018, [arXiv:1711.02257](https://arxiv.org/
    abs/1711.02257): equal gradient norms for every task), solved in closed form at each step instead of learned, and
    measured on the representation rather than on the last shared layer (LibMTL's `rep_grad` idea), so it costs one
    small backward pass through each present head and no extra backward through the encoder. With one task per step
    (`batching="per_task"`) every weight is 1 and the strategy equals `static`.

    Mechanics: `combine` returns the plain sum of the losses plus a term whose value is 0 and whose gradient at
    `representation` is Σ_i (w_i - 1) · ∇_h L_i (and none at the heads), so the backward pass delivers the rescaled
    sum to the encoder; gradients of other losses that reach h (auxiliary ones) pass unchanged.

    Args:
        task_names: every task of the model.
        mode (`str`, *optional*, defaults to `"cap"`): `"cap"` (damp tasks above the median norm) or `"equal"`.
        eps (`float`, *optional*, defaults to 1e-8): floor of a gradient norm (a task whose loss has no gradient
            at the representation keeps weight 1 instead of dividing by zero).

    Several processes: each process's squared norms are summed over processes before the weights are taken, so every
    process uses the same weights. The weights are recomputed at every micro-batch; nothing is carried between
    steps, so `state_dict()` is empty and a resumed run equals an uninterrupted one. `weights()` reports the last
    micro-batch's encoder-side weights.
    """

    name = "rep_norm"
    needs_representation = True

    def __init__(self, task_names: Sequence[str], mode: str = "cap", eps: float = 1e-8):
        super().__init__(task_names)
        if mode not in MODES:
            raise ValueError(f"Weighting {self.name!r}: `mode` must be one of {', '.join(MODES)}, got {mode!r}.")
        self.mode = mode
        self.eps = check_number(self.name, "eps", eps, low=0.0, strict=True)
        self.register_buffer("last_weight", torch.ones(len(self.task_names)), persistent=False)

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.last_weight.tolist()))

    def skip_micro_batch(self, device: torch.device | str = "cpu") -> None:
        """A micro-batch without a finite task loss on this process: contribute zero norms to the all-reduce the
        other processes enter in `combine`, so none of them waits forever."""
        if is_distributed():
            dist.all_reduce(torch.zeros(len(self.task_names), device=device))

    def combine(self, task_losses: dict[str, torch.Tensor], representation: torch.Tensor | None = None) -> torch.Tensor:
        self._check_tasks(task_losses)
        names, index = present_tasks(self.task_names, task_losses)
        losses = stack_losses(self.name, names, task_losses)
        check_representation(self.name, representation)
        squared = torch.zeros(len(self.task_names), device=losses.device, dtype=torch.float32)
        grads = {}
        for name, i in zip(names, index):
            (grad,) = torch.autograd.grad(task_losses[name], representation, retain_graph=True, allow_unused=True)
            if grad is not None:
                grads[i] = grad.detach()
                squared[i] = grads[i].float().pow(2).sum()
        if is_distributed():
            dist.all_reduce(squared)  # the same tasks' norms everywhere: every process uses the same weights
        norms = squared.sqrt()
        measured = norms > self.eps  # tasks present on any process (the same set everywhere)
        weight = torch.ones_like(norms)
        if measured.any():
            present = norms[measured]
            if self.mode == "equal":
                weight[measured] = present.mean() / present
            else:  # the median of an even count: the mean of the two middle norms
                middle = present.sort().values[(present.numel() - 1) // 2 : present.numel() // 2 + 1].mean()
                weight[measured] = (middle / present).clamp(max=1.0)
        self.last_weight.copy_(weight.to(self.last_weight))
        total = losses.sum()
        corrections = [(weight[i] - 1).to(g) * g for i, g in grads.items() if weight[i] != 1]
        if corrections:
            # <c, h> has gradient c at h and none at the heads; minus its own value, it leaves the loss unchanged.
            # Inside the loss (not a hook), it follows every scaling of the backward (accumulation, fp16 scaler).
            surrogate = (torch.stack(corrections).sum(0) * representation).sum()
            total = total + (surrogate - surrogate.detach())
        return total
