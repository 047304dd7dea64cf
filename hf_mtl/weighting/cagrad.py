"""CAGrad: the update that maximises the worst task's improvement while staying close to the average gradient."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._utils import check_number, present_tasks, project_to_simplex
from .base import WEIGHTINGS, GradientWeighting


def solve_cagrad_dual(gram: torch.Tensor, c: float, max_iter: int = 500, tol: float = 1e-10) -> torch.Tensor:
    r"""Coefficients `a` of the CAGrad direction d = Σ_j a_j g_j, from the Gram matrix G_ij = g_i · g_j alone.

    Minimises the dual F(w) = g_wᵀ g0 + r ‖g_w‖ over the simplex (g_w = Σ w_i g_i, g0 the mean gradient,
    r = c ‖g0‖) by projected gradient descent with backtracking, on G scaled to unit mean diagonal. The dual gap
    F(w) − min_i g_i · d(w) (zero exactly at the optimum) is the stopping test, so the result is certified rather
    than "N iterations of SGD" as in the official code. Returns a = 1/K + (r / ‖g_w‖) w.
    """
    k = gram.shape[0]
    gram = gram.double()
    scale = gram.diagonal().mean()
    uniform = torch.full((k,), 1.0 / k, dtype=gram.dtype)
    if scale <= 0:
        return uniform  # every gradient is zero
    gram = gram / scale
    radius = c * math.sqrt(max(float(uniform @ gram @ uniform), 0.0))
    gram_mean = gram @ uniform
    if radius == 0:
        return uniform

    def norm_w(w):
        return (w @ gram @ w).clamp(min=1e-20).sqrt()

    def objective(w):
        return w @ gram_mean + radius * norm_w(w)

    def coefficients(w):
        return uniform + (radius / norm_w(w)) * w

    w, step = uniform.clone(), 1.0
    for _ in range(max_iter):
        coef = coefficients(w)
        gradient = gram @ coef  # ∇F(w) = G (1/K + r w / ‖g_w‖), also every task's inner product with d(w)
        value = objective(w)
        if value - gradient.min() <= tol:
            break
        while True:
            candidate = project_to_simplex(w - step * gradient)
            delta = candidate - w
            if objective(candidate) <= value + gradient @ delta + (delta @ delta) / (2 * step) or step < 1e-12:
                break
            step /= 2
        if bool((delta == 0).all()):
            break
        w, step = candidate, step * 2
    return coefficients(w)


@WEIGHTINGS.register("cagrad")
class CAGradWeighting(GradientWeighting):
    r"""Conflict-Averse Gradient descent of Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for
    Multi-task Learning", NeurIPS 2021, [arXiv:2110.14048](https://arxiv.org/abs/2110.14048) (official code:
    github.com/Cranial-XIX/CAGrad).

    With g0 the average of the K task gradients, CAGrad takes the direction d that maximises the worst task's
    first-order improvement min_i g_i · d within the ball ‖d − g0‖ ≤ c‖g0‖. Through the dual,

        w* = argmin_{w ∈ simplex} g_wᵀ g0 + √φ ‖g_w‖,   φ = c² ‖g0‖²,   d = g0 + (√φ / ‖g_w*‖) g_w*

    c = 0 gives the average gradient; c → ∞ approaches MGDA's min-norm point. Only the K×K Gram matrix is needed to
    solve for w (see `solve_cagrad_dual`); the update is one linear combination of the task gradients.

    Args:
        task_names: every task of the model.
        c (`float`, defaults to 0.4): radius of the ball around g0, relative to ‖g0‖ (the paper's value for NYUv2;
            it recommends c in [0, 1)).
        rescale (`bool`, defaults to `True`): divide d by (1 + c²), as the official code does by default
            (`rescale=1`), so the update's size stays close to the average gradient's as c grows.

    Scale (as the official code, which multiplies by K "to match the sum loss"): the returned gradient is
    K · d / (1 + c²), i.e. with c = 0 exactly Σ_i g_i, the gradient of the summed losses that static weights of 1
    produce, so the learning rate means the same thing for every strategy. Heads get their own task's gradient
    unchanged (`weights()` is 1.0 for every task).

    Deviations: w is solved to a certified optimum (dual gap <= 1e-10 on the normalised Gram matrix) by projected
    gradient descent instead of the official SLSQP / 20 SGD steps; with a single task present its gradient is
    returned unchanged (the formula would scale it by (1 + c) / (1 + c²)). Missing tasks: K is the number of tasks
    present in the step. No state besides the hyperparameters (`state_dict()` is empty).
    """

    name = "cagrad"

    def __init__(self, task_names: Sequence[str], c: float = 0.4, rescale: bool = True):
        super().__init__(task_names)
        self.c = check_number(self.name, "c", c, low=0.0, fix="Use c >= 0 (paper: 0.4; 0 is plain averaging).")
        if not isinstance(rescale, bool):
            raise ValueError(f"Weighting 'cagrad': `rescale` must be True or False, got {rescale!r}.")
        self.rescale = rescale

    def weights(self) -> dict[str, float]:
        return dict.fromkeys(self.task_names, 1.0)

    def combine_gradients(
        self, task_gradients: dict[str, torch.Tensor], task_losses: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        self._check_tasks(task_gradients)
        self._check_tasks(task_losses)
        names, _ = present_tasks(self.task_names, task_gradients)
        if not names:
            raise ValueError("Weighting 'cagrad' got no task gradients: pass at least one task.")
        grads = [task_gradients[name] for name in names]
        if len(grads) == 1:
            return grads[0].clone()
        k = len(grads)
        gram = torch.empty(k, k, dtype=torch.float64)
        for i in range(k):
            for j in range(i, k):
                gram[i, j] = gram[j, i] = float(torch.dot(grads[i], grads[j]))
        if not bool(torch.isfinite(gram).all()):
            # A NaN/inf gradient has no conflict-averse direction: hand back the plain sum (non-finite too), so the
            # trainer's non-finite handling (`non_finite_loss`: error naming the step, or skip) deals with the step.
            return torch.stack(grads).sum(dim=0)
        coefficients = solve_cagrad_dual(gram, self.c) * (k / (1 + self.c**2) if self.rescale else k)
        combined = torch.zeros_like(grads[0])
        for grad, coefficient in zip(grads, coefficients.tolist()):
            combined.add_(grad, alpha=coefficient)
        return combined
