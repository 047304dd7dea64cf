"""Homoscedastic-uncertainty weighting: each task learns how noisy it is, and noisy tasks are down-weighted."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._utils import present_tasks, stack_losses
from .base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("uncertainty")
class UncertaintyWeighting(LossWeighting):
    r"""Uncertainty weighting of Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics", CVPR 2018, [arXiv:1705.07115](https://arxiv.org/abs/1705.07115).

    Each task has a learnable log-variance s_i = log σ_i² (an `nn.Parameter`, initialised to 0, i.e. weight 1):

        loss = Σ_i exp(-s_i) · L_i + s_i        (sum over the tasks present in the step)

    Minimising over s_i gives exp(-s_i) = 1 / L_i: for a mean-squared-error task, L_i → σ_i² (its noise variance), so
    the learned weight tends to 1/σ_i² and noisy tasks count less. `weights()` reports exp(-s_i).

    Deviation from the paper (the 1/2 factors): the paper writes 1/(2σ²)·L + log σ for regression and
    1/σ²·L + log σ for classification. We use the common single form exp(-s)·L + s for every task (as most
    re-implementations do): it is exactly twice the paper's regression term, so regression tasks have the paper's
    optimum, and it does not need to know whether a loss is a regression or a classification loss (a classification
    task's optimum weight is 1/L instead of the paper's 1/(2L)).

    Learning rate (`default_lr = 0.025`): the trainer puts the s_i in their own parameter group. At a BERT
    fine-tuning rate (2e-5) Adam moves s_i by about 2e-5 per step, so it could not travel the 1-5 units between s = 0
    and log L_i within a run: the weights would stay frozen at 1. At 0.025 Adam moves s_i by at most ~0.025 per step:
    on a two-task regression (noise σ = 1 and 3, batch 256) the weight ratio reaches 1/σ² within ~10% after
    300-400 steps, with a jitter of ~2% afterwards (0.01 needs ~1000 steps; 0.05 doubles the jitter). It is also
    the rate FAMO uses for its per-task logits, the same kind of few scalars.
    Use no weight decay on this group (decay pulls every weight back to 1).

    A task absent from a step leaves its s_i out of the graph (no gradient): under DDP this needs
    `find_unused_parameters=True`, as task-specific heads do.
    """

    name = "uncertainty"
    default_lr = 0.025

    def __init__(self, task_names: Sequence[str]):
        super().__init__(task_names)
        self.log_vars = nn.Parameter(torch.zeros(len(self.task_names)))

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, torch.exp(-self.log_vars.detach()).tolist()))

    def combine(self, task_losses: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_tasks(task_losses)
        names, index = present_tasks(self.task_names, task_losses)
        losses = stack_losses(self.name, names, task_losses)
        log_vars = self.log_vars[index].to(losses)
        return (torch.exp(-log_vars) * losses + log_vars).sum()
