"""Dynamic Weight Average: tasks whose loss fell least over the last epoch get more weight in the next one."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._utils import check_number, present_tasks, stack_losses
from .base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("dwa")
class DWAWeighting(LossWeighting):
    r"""Dynamic Weight Average of Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019,
    [arXiv:1803.10704](https://arxiv.org/abs/1803.10704).

        w_i(t) = K · exp(r_i(t-1) / T) / Σ_j exp(r_j(t-1) / T),   r_i(t-1) = L_i(t-1) / L_i(t-2)

    where L_i(t) is task i's average training loss over epoch t, K the number of tasks and T the temperature
    (T → ∞ gives equal weights). Epochs 0 and 1 use w_i = 1. Loss = Σ_i w_i · L_i over the tasks present in the step.

    Args:
        task_names: every task of the model.
        T (`float`, defaults to 2.0): softmax temperature (the paper's value).

    Behaviour beyond the paper (which always sees every task): each step's loss feeds the epoch average of the tasks
    present in it (`on_step_end`); a task never seen during an epoch carries its previous average forward (so its
    ratio is 1), and a task without two recorded epochs uses r = 1. Non-finite step losses are left out of the
    averages so one bad batch does not turn every weight into NaN. All state (running sums, the two last epoch
    averages, the current weights) is in buffers: a mid-epoch resume continues the same averages.
    """

    name = "dwa"

    def __init__(self, task_names: Sequence[str], T: float = 2.0):
        super().__init__(task_names)
        self.T = check_number(self.name, "T", T, low=0.0, strict=True, fix="Use a positive temperature (paper: 2.0).")
        k = len(self.task_names)
        self.register_buffer("weight", torch.ones(k))
        self.register_buffer("loss_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("loss_count", torch.zeros(k, dtype=torch.long))
        # Row 0: average of the last finished epoch, row 1: the epoch before; `seen` marks which entries exist.
        self.register_buffer("epoch_loss", torch.zeros(2, k, dtype=torch.float64))
        self.register_buffer("epoch_seen", torch.zeros(2, k, dtype=torch.bool))
        # The epoch the running sums belong to: a checkpoint taken at an epoch's last step is saved before that
        # epoch's end is processed, so the resumed run closes it at its first epoch start instead.
        self.register_buffer("open_epoch", torch.zeros((), dtype=torch.long))

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.weight.tolist()))

    def combine(self, task_losses: dict[str, torch.Tensor]) -> torch.Tensor:
        self._check_tasks(task_losses)
        names, index = present_tasks(self.task_names, task_losses)
        losses = stack_losses(self.name, names, task_losses)
        return (self.weight[index].to(losses) * losses).sum()

    def on_step_end(self, task_losses: dict[str, float]) -> None:
        self._check_tasks(task_losses)
        for name, value in task_losses.items():
            value = float(value)
            if math.isfinite(value):
                i = self.task_names.index(name)
                self.loss_sum[i] += value
                self.loss_count[i] += 1

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # A checkpoint from before `open_epoch` existed: resume as it did then (its running sums stay open).
        state_dict = {"open_epoch": torch.tensor(torch.iinfo(torch.long).max), **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_epoch_begin(self, epoch: int) -> None:
        if epoch > int(self.open_epoch) and bool(self.loss_count.any()):
            self.on_epoch_end(int(self.open_epoch))  # a resume right after this epoch's last step: close it now
        self.open_epoch.fill_(epoch)

    def on_epoch_end(self, epoch: int) -> None:
        if not bool(self.loss_count.any()):
            return  # an epoch without a single step (e.g. a resume exactly at its end) must not shift the history
        seen = self.loss_count > 0
        average = torch.where(seen, self.loss_sum / self.loss_count.clamp(min=1), self.epoch_loss[0])
        self.epoch_loss[1] = self.epoch_loss[0]
        self.epoch_seen[1] = self.epoch_seen[0]
        self.epoch_loss[0] = average
        self.epoch_seen[0] = self.epoch_seen[0] | seen
        self.loss_sum.zero_()
        self.loss_count.zero_()
        both = self.epoch_seen.all(dim=0)
        if bool(both.any()):
            ratio = torch.where(both, self.epoch_loss[0] / self.epoch_loss[1].clamp(min=1e-12), 1.0)
            self.weight.copy_(len(self.task_names) * torch.softmax(ratio / self.T, dim=0))
