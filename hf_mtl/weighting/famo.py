"""FAMO: balance the tasks' *log-loss decrease rates* with O(K) work per step and no per-task gradients (one extra
forward pass with the default same-batch update)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._utils import adam_update_, check_number, present_tasks, stack_losses
from .base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("famo")
class FAMOWeighting(LossWeighting):
    r"""Fast Adaptive Multitask Optimization of Liu, Feng, Stone & Liu, "FAMO: Fast Adaptive Multitask
    Optimization", NeurIPS 2023, [arXiv:2306.03792](https://arxiv.org/abs/2306.03792) (official code:
    github.com/Cranial-XIX/FAMO).

    Task logits ξ, z = softmax(ξ), D_i = L_i − L_i^min + ε (L_i^min: a lower bound of the loss, 0 by default):

        loss = Σ_i z_i · log D_i / c,   c = Σ_i z_i / D_i  (detached)

    so the gradient is Σ_i (z_i / (c D_i)) ∇L_i, a convex combination of the task gradients (the coefficients sum to
    1). After the model update, ξ moves to equalise the tasks' log-loss decreases δ_i = log D_i(t) − log D_i(t+1):
    its gradient is (∂z/∂ξ)ᵀ δ, applied with Adam (lr `lr`, L2 weight decay `gamma`). A task whose loss drops slowly
    (small δ_i) sees its logit rise, so its weight grows.

    Args:
        task_names: every task of the model.
        lr (`float`, defaults to 0.025): Adam learning rate of ξ (the paper's value).
        gamma (`float`, defaults to 1e-3): Adam weight decay on ξ, which keeps the weights from saturating (the value
            of the paper's Algorithm 2; the official code defaults to 1e-5 in `methods/weight_methods.py` and 1e-2 in
            its example `famo.py`).
        eps (`float`, defaults to 1e-8): keeps log D_i finite (official value).
        min_losses (`dict[str, float]`, *optional*): L_i^min per task (default 0, right for cross-entropy and MSE).
        update (`str`, defaults to `"same_batch"`): where the loss decrease δ is measured (below).

    Where δ_i is measured, `update`:
    - `"same_batch"` (default): the paper's and the official code's update: after the step the trainer runs the
      step's batches again without gradients, and δ_i compares each task's loss on them before and after the update
      (one extra forward pass per step; its cost is row 2 of `python -m benchmarks --only weighting`).
    - `"next_step"`: δ_i compares the loss of step t with the loss of step t+1 (reported by `on_step_end`), so FAMO
      keeps its O(1) cost; δ_i is noisier (different batches), and ξ moves one step later than in the paper.
    Chosen by measurement (dev suite, mixed batches, seed 1, mean Δ against single-task runs): same batch -1.6
    points, next step -6.7 (the taggers collapsed: NER -13, slots -17); both far below `rep_norm` (+1.4).
    The paper's gradient clipping (max norm 1) is the trainer's `max_grad_norm`.

    `weights()` reports K · z_i (1.0 each at the start, like the other strategies); the effective weight of L_i in
    a step is z_i / (c D_i). Missing tasks: the loss is taken over the tasks present (c too), and ξ_i moves only when
    task i was present in two consecutive steps. All state (ξ, the Adam moments and step counts, the previous losses)
    is in buffers, so `state_dict()` holds tensors only and a resume is exact.
    """

    name = "famo"
    needs_all_tasks_per_step = True
    UPDATES = ("same_batch", "next_step")

    def __init__(
        self,
        task_names: Sequence[str],
        lr: float = 0.025,
        gamma: float = 1e-3,
        eps: float = 1e-8,
        min_losses: dict[str, float] | None = None,
        update: str = "same_batch",
    ):
        super().__init__(task_names)
        if update not in self.UPDATES:
            raise ValueError(f"famo: unknown update {update!r}; choose one of {', '.join(self.UPDATES)}.")
        self.update = update
        self.lr = check_number(self.name, "lr", lr, low=0.0, strict=True, fix="Use a positive rate (paper: 0.025).")
        self.gamma = check_number(self.name, "gamma", gamma, low=0.0, fix="Use a decay >= 0 (paper: 1e-3).")
        self.eps = check_number(self.name, "eps", eps, low=0.0, strict=True, fix="Use a small positive value (1e-8).")
        min_losses = {} if min_losses is None else dict(min_losses)
        self._check_tasks(min_losses)
        for task, value in min_losses.items():
            check_number(self.name, f"min_losses[{task!r}]", value, fix="Give a finite lower bound of that loss.")
        k = len(self.task_names)
        self.register_buffer("min_loss", torch.tensor([float(min_losses.get(n, 0.0)) for n in self.task_names]))
        self.register_buffer("logits", torch.zeros(k))
        self.register_buffer("exp_avg", torch.zeros(k))
        self.register_buffer("exp_avg_sq", torch.zeros(k))
        self.register_buffer("adam_step", torch.zeros(k))
        self.register_buffer("prev_loss", torch.zeros(k))
        self.register_buffer("prev_seen", torch.zeros(k, dtype=torch.bool))

    @property
    def reevaluates_step(self) -> bool:
        return self.update == "same_batch"

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, (len(self.task_names) * torch.softmax(self.logits, 0)).tolist()))

    def _gap(self, losses: torch.Tensor, index) -> torch.Tensor:
        """D_i = L_i − L_i^min + ε, floored at ε if a loss dips below its stated bound."""
        return (losses - self.min_loss[index].to(losses)).clamp(min=0) + self.eps

    def combine(self, task_losses: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_tasks(task_losses)
        names, index = present_tasks(self.task_names, task_losses)
        losses = stack_losses(self.name, names, task_losses)
        z = torch.softmax(self.logits[index], 0).to(losses)
        gap = self._gap(losses, index)
        c = (z / gap.detach()).sum()
        return (z * gap.log()).sum() / c

    def on_step_end(self, task_losses: dict[str, float]) -> None:
        self._check_tasks(task_losses)
        if self.reevaluates_step:
            return  # `on_step_reevaluated` moves ξ
        now, now_seen = self._loss_table(task_losses)
        self._move_logits(self.prev_loss, now, now_seen & self.prev_seen)
        self.prev_loss.copy_(now)
        self.prev_seen.copy_(now_seen)

    def on_step_reevaluated(self, before: dict[str, float], after: dict[str, float]) -> None:
        self._check_tasks(before)
        self._check_tasks(after)
        if not self.reevaluates_step:
            return
        before_table, before_seen = self._loss_table(before)
        after_table, after_seen = self._loss_table(after)
        self._move_logits(before_table, after_table, before_seen & after_seen)

    def _loss_table(self, task_losses: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Losses in task order, and which tasks have a finite one."""
        _, index = present_tasks(self.task_names, task_losses)
        finite = [i for i in index if math.isfinite(float(task_losses[self.task_names[i]]))]
        table = torch.zeros_like(self.prev_loss)
        seen = torch.zeros_like(self.prev_seen)
        table[finite] = torch.tensor([float(task_losses[self.task_names[i]]) for i in finite], dtype=table.dtype)
        seen[finite] = True
        return table, seen

    def _move_logits(self, before: torch.Tensor, after: torch.Tensor, both: torch.Tensor) -> None:
        """One Adam step on ξ towards equal log-loss decreases δ = log D(before) − log D(after), over `both`."""
        if not bool(both.any()):
            return
        all_index = list(range(len(self.task_names)))
        decrease = self._gap(before, all_index).log() - self._gap(after, all_index).log()
        decrease = torch.where(both, decrease, 0.0)
        # (∂z/∂ξ)ᵀ δ for z = softmax over the tasks seen in both: z ⊙ (δ − ⟨z, δ⟩).
        z = torch.softmax(self.logits.masked_fill(~both, -math.inf), 0)
        grad = z * (decrease - (z * decrease).sum())
        adam_update_(
            self.logits,
            grad,
            self.exp_avg,
            self.exp_avg_sq,
            self.adam_step,
            both,
            lr=self.lr,
            weight_decay=self.gamma,
        )
