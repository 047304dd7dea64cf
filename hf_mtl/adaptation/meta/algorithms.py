"""Meta-learning update rules over an explicit dict of parameters (`torch.func.functional_call` style).

Each algorithm gets the parameters of one episode (meta-learned ones plus the episode's head), the names of those
the inner loop adapts and of those the outer loop learns, and two closures: the support loss and the query loss of
a parameter dict. It returns the meta-gradient of each meta-learned parameter; the trainer averages them over the
episodes of a meta-batch and hands them to an ordinary optimizer, so "meta lr" is that optimizer's lr.

- `fomaml`: first-order MAML (Finn, Abbeel & Levine, ICML 2017, arXiv:1703.03400, section 5.2): the gradient of
  the query loss at the adapted parameters, g = ∇L_q(θ').
- `reptile`: Reptile (Nichol, Achiam & Schulman 2018, arXiv:1803.02999): g = θ - θ', so an SGD outer step with lr ε
  is θ ← θ + ε(θ' - θ). The inner loop trains on the support set only; the query loss is reported, not used.
- `maml`: second-order MAML: g = ∇_θ L_q(θ'(θ)), differentiating through the inner loop (`create_graph=True`);
  memory grows with the inner steps.

The inner loop is plain SGD (θ' = θ - α∇L_s), as in the papers: a few steps with no optimizer state, the same
procedure the few-shot evaluation applies when asked for `optimizer="sgd"`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ...utils.registry import Registry


LossFn = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
META_ALGORITHMS: Registry[type[MetaAlgorithm]] = Registry("meta-learning algorithm")


@dataclass
class InnerLoop:
    """Inner-loop SGD: `steps` full-batch steps on the support set; `head_lr` for `heads.*` (defaults to `lr`)."""

    steps: int
    lr: float
    head_lr: float | None = None

    def lr_for(self, name: str) -> float:
        return self.head_lr if self.head_lr is not None and name.startswith("heads.") else self.lr


def adapt(
    params: Mapping[str, torch.Tensor],
    adapt_names: Collection[str],
    support_loss: LossFn,
    inner: InnerLoop,
    create_graph: bool = False,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Run the inner loop; returns the adapted parameters and the support loss before each step.

    First-order (`create_graph=False`): the adapted tensors are new leaves (detached), so a later backward reaches
    them and stops there. Second-order: they stay functions of `params`.
    """
    fast = dict(params)
    names = [name for name in fast if name in adapt_names]
    losses = []
    if not names:  # nothing to adapt (e.g. a frozen model): the support loss is only reported
        with torch.no_grad():
            return fast, [float(support_loss(fast))]
    for _ in range(inner.steps):
        loss = support_loss(fast)
        losses.append(float(loss.detach()))
        grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=create_graph, allow_unused=True)
        for name, grad in zip(names, grads):
            if grad is None:  # e.g. a head of another task: not part of this loss
                continue
            updated = fast[name] - inner.lr_for(name) * grad
            fast[name] = updated if create_graph else updated.detach().requires_grad_(True)
    return fast, losses


class MetaAlgorithm:
    """Base class: `meta_gradients` returns `({name: gradient}, {metric: value})` for one episode."""

    name: ClassVar[str] = ""
    second_order: ClassVar[bool] = False
    # Whether the meta-gradient reaches parameters the inner loop does not adapt (ANIL-style head-only inner loops).
    supports_frozen_inner: ClassVar[bool] = True

    def meta_gradients(
        self,
        params: Mapping[str, torch.Tensor],
        adapt_names: Collection[str],
        meta_names: Collection[str],
        support_loss: LossFn,
        query_loss: LossFn,
        inner: InnerLoop,
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        raise NotImplementedError

    @staticmethod
    def _leaves(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: p.detach().requires_grad_(True) for name, p in params.items()}

    @staticmethod
    def _metrics(support: list[float], query: torch.Tensor | float | None) -> dict[str, float]:
        metrics = {"support_loss": support[0] if support else float("nan")}
        if query is not None:
            metrics["query_loss"] = float(query)
        return metrics


@META_ALGORITHMS.register("fomaml")
class FOMAML(MetaAlgorithm):
    """First-order MAML: g = ∇L_query(θ'), the second-derivative terms of MAML dropped."""

    name = "fomaml"

    def meta_gradients(self, params, adapt_names, meta_names, support_loss, query_loss, inner):
        fast, support = adapt(self._leaves(params), adapt_names, support_loss, inner)
        query = query_loss(fast)
        names = list(meta_names)
        grads = torch.autograd.grad(query, [fast[n] for n in names], allow_unused=True)
        gradients = {n: (g if g is not None else torch.zeros_like(fast[n])).detach() for n, g in zip(names, grads)}
        return gradients, self._metrics(support, query.detach())


@META_ALGORITHMS.register("reptile")
class Reptile(MetaAlgorithm):
    """Reptile: g = θ - θ' (the inner loop's displacement, sign-flipped so an optimizer *descends* along it)."""

    name = "reptile"
    supports_frozen_inner = False

    def meta_gradients(self, params, adapt_names, meta_names, support_loss, query_loss, inner):
        fast, support = adapt(self._leaves(params), adapt_names, support_loss, inner)
        with torch.no_grad():
            query = query_loss(fast) if query_loss is not None else None
            gradients = {n: params[n].detach() - fast[n].detach() for n in meta_names}
        return gradients, self._metrics(support, query)


@META_ALGORITHMS.register("maml")
class MAML(MetaAlgorithm):
    """Second-order MAML: backpropagates the query loss through every inner step (Hessian-vector products)."""

    name = "maml"
    second_order = True

    def meta_gradients(self, params, adapt_names, meta_names, support_loss, query_loss, inner):
        for name in meta_names:
            if not params[name].requires_grad:
                raise ValueError(f"Second-order MAML differentiates through {name!r}, which does not require grad.")
        # PyTorch's fused CPU/GPU attention kernels have no double backward; the math kernel does.
        with sdpa_kernel([SDPBackend.MATH]):
            fast, support = adapt(dict(params), adapt_names, support_loss, inner, create_graph=True)
            query = query_loss(fast)
            names = list(meta_names)
            grads = torch.autograd.grad(query, [params[n] for n in names], allow_unused=True)
        gradients = {n: (g if g is not None else torch.zeros_like(params[n])).detach() for n, g in zip(names, grads)}
        return gradients, self._metrics(support, query.detach())
