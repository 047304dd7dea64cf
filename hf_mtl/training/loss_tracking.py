"""Running per-task loss sums: one window for logging (`loss_<task>`), one per optimizer step for the weighting
strategy. Under several processes the sums are all-reduced so every process logs and updates the same values."""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..utils.distributed import is_distributed


class TaskLossTracker:
    def __init__(self, task_names: list[str], auxiliary_names: tuple[str, ...] = ("adversarial", "orthogonality")):
        self.task_names = list(task_names)
        self.auxiliary_names = list(auxiliary_names)
        width = len(self.task_names) + len(self.auxiliary_names)
        self._window = torch.zeros(2, width, dtype=torch.float64)  # row 0: sums, row 1: counts
        self._step = torch.zeros(2, len(self.task_names), dtype=torch.float64)
        self.skipped_steps = 0
        self.non_finite_tasks: dict[str, float] = {}  # name -> value, for the step being accumulated
        self.step_skipped = False

    def add(self, task_losses: dict[str, float | torch.Tensor], auxiliary_losses: dict | None = None) -> None:
        for name, value in task_losses.items():
            i = self.task_names.index(name)
            value = float(value)
            self._window[0, i] += value
            self._window[1, i] += 1
            self._step[0, i] += value
            self._step[1, i] += 1
        for name, value in (auxiliary_losses or {}).items():
            if name in self.auxiliary_names:
                i = len(self.task_names) + self.auxiliary_names.index(name)
                self._window[0, i] += float(value.detach() if torch.is_tensor(value) else value)
                self._window[1, i] += 1

    @staticmethod
    def _reduce(table: torch.Tensor, device) -> torch.Tensor:
        if is_distributed():
            table = table.to(device=device, dtype=torch.float64 if device.type != "mps" else torch.float32)
            dist.all_reduce(table)
            return table.cpu().double()
        return table

    def pop_step(self, device) -> dict[str, float]:
        """Mean loss of each task seen during the optimizer step that just ended (all processes)."""
        table = self._reduce(self._step.clone(), device)
        self._step.zero_()
        return {name: float(table[0, i] / table[1, i]) for i, name in enumerate(self.task_names) if table[1, i] > 0}

    def pop_window(self, device) -> dict[str, float]:
        """`loss_<task>` / `loss_<auxiliary>` means since the previous log (all processes)."""
        table = self._reduce(self._window.clone(), device)
        self._window.zero_()
        names = self.task_names + self.auxiliary_names
        return {f"loss_{name}": float(table[0, i] / table[1, i]) for i, name in enumerate(names) if table[1, i] > 0}
