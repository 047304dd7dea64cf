"""PCGrad: remove from each task gradient the part that conflicts with another task's gradient, then sum."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._utils import present_tasks
from .base import WEIGHTINGS, GradientWeighting


@WEIGHTINGS.register("pcgrad")
class PCGradWeighting(GradientWeighting):
    r"""Projecting Conflicting Gradients of Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for
    Multi-Task Learning", NeurIPS 2020, [arXiv:2001.06782](https://arxiv.org/abs/2001.06782).

    For each task i, start from g_i^PC = g_i and, for every other task j in a random order,

        if g_i^PC · g_j < 0:   g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j

    (projection on the normal plane of the *original* g_j, as in the paper). The update is Σ_i g_i^PC: the paper's
    sum, which equals the plain sum of gradients (static weights of 1) when no pair conflicts. Heads get their own
    task's gradient unchanged (`weights()` is 1.0 for every task).

    Args:
        task_names: every task of the model.
        seed (`int`, defaults to 0): seed of the random projection orders (not in the paper). The generator state is
            a buffer, so a resumed run draws the same orders as an uninterrupted one.

    Missing tasks: the surgery runs over the tasks present in the step (one task: its gradient is returned as is).
    Memory: the output only, whatever the number of tasks (the surgery itself runs on the K x K Gram matrix).
    """

    name = "pcgrad"

    def __init__(self, task_names: Sequence[str], seed: int = 0):
        super().__init__(task_names)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"Weighting 'pcgrad': `seed` must be an integer >= 0, got {seed!r}.")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("rng_state", generator.get_state())

    def weights(self) -> dict[str, float]:
        return dict.fromkeys(self.task_names, 1.0)

    def combine_gradients(
        self, task_gradients: dict[str, torch.Tensor], task_losses: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        self._check_tasks(task_gradients)
        self._check_tasks(task_losses)
        names, _ = present_tasks(self.task_names, task_gradients)
        if not names:
            raise ValueError("Weighting 'pcgrad' got no task gradients: pass at least one task.")
        grads = [task_gradients[name] for name in names]
        # Every projected gradient is a combination of the original ones, so the surgery runs on the K x K Gram
        # matrix and the update is one weighted sum: K(K+1)/2 dot products and K scaled additions over the
        # parameters, instead of a copy, K-1 dot products and up to K-1 subtractions per task.
        k = len(grads)
        pairs = [(i, j) for i in range(k) for j in range(i, k)]
        dots = torch.stack([torch.dot(grads[i], grads[j]) for i, j in pairs]).double().cpu()  # one device sync
        gram = torch.empty(k, k, dtype=torch.float64)
        for (i, j), dot in zip(pairs, dots):
            gram[i, j] = gram[j, i] = dot
        generator = torch.Generator().manual_seed(0)
        generator.set_state(self.rng_state.cpu())
        total = torch.zeros(k, dtype=torch.float64)  # the update is sum_j total[j] g_j
        for i in range(k):
            coefficients = torch.zeros(k, dtype=torch.float64)  # g_i^PC = sum_j coefficients[j] g_j
            coefficients[i] = 1.0
            for j in torch.randperm(k, generator=generator).tolist():
                if j == i or gram[j, j] == 0:
                    continue
                dot = coefficients @ gram[:, j]  # g_i^PC . g_j
                if dot < 0:
                    coefficients[j] -= dot / gram[j, j]
            total += coefficients
        combined = grads[0] * float(total[0])
        for j in range(1, k):
            combined.add_(grads[j], alpha=float(total[j]))
        self.rng_state.copy_(generator.get_state())
        return combined
