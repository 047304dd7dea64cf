"""Learned task sampling: the sampler learns how often to train each task from how much each task is still
improving, instead of a hand-set proportional/temperature schedule.

In the spirit of AutoSeM (Guo, Pasunuru & Bansal, NAACL 2019, arXiv:1904.04153), which learns task-sampling
ratios with a multi-armed bandit rewarded on validation performance. Here every task's validation loss is observed
at every evaluation (full information), so the bandit is a softmax over scores with a Hedge / gradient-bandit style
update against the mean reward as baseline (Sutton & Barto 2018, §2.8):

    r_i = (L_i(previous) − L_i(now)) / L_i(previous)          relative improvement of task i since the last update
    s_i ← s_i + lr · (r_i − mean_j r_j)
    p_i = floor + (1 − K·floor) · softmax(s / temperature)_i   no task ever falls below `floor`

Tasks whose loss keeps falling are sampled more; plateaued (or over-fitting) tasks less. The signal is the
evaluation loss (`signal="eval_loss"`, needs `eval_strategy` and eval data for every task) or, without evaluation,
the training loss averaged over windows of `update_steps` optimizer steps (`signal="train_loss"`).

Every probability vector used is recorded per optimizer step: replaying the steps of a resumed run draws exactly
the same tasks, and the record is the "probabilities over time" that the trainer logs and plots.
"""

from __future__ import annotations

import math

import torch

from .base import SAMPLERS, TaskSampler


SIGNALS = ("eval_loss", "train_loss")


@SAMPLERS.register("learned")
class LearnedSampler(TaskSampler):
    """Args:
    lr (`float`, defaults to 5.0): step size of the score update (rewards are relative loss changes, ~0.01-0.3).
    floor (`float`, defaults to 0.05): minimum probability of every task; `floor * K` must be < 1.
    temperature (`float`, defaults to 1.0): softmax temperature, > 0.
    signal (`str`, defaults to `"eval_loss"`): `"eval_loss"` or `"train_loss"`.
    update_steps (`int`, defaults to 50): window length in optimizer steps for `signal="train_loss"`.
    init (`str`, defaults to `"proportional"`): starting probabilities, `"proportional"` or `"uniform"`.
    """

    def __init__(
        self,
        task_sizes,
        lr: float = 5.0,
        floor: float = 0.05,
        temperature: float = 1.0,
        signal: str = "eval_loss",
        update_steps: int = 50,
        init: str = "proportional",
    ):
        super().__init__(task_sizes)
        k = len(self.task_sizes)
        if signal not in SIGNALS:
            raise ValueError(f"Unknown learned-sampling signal {signal!r}. Choose one of: {', '.join(SIGNALS)}.")
        if not 0 <= floor < 1 / k:
            raise ValueError(f"`floor` must be in [0, 1/{k}) for {k} tasks (floor x tasks < 1), got {floor}.")
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}.")
        if not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"`lr` must be a positive number, got {lr}.")
        if update_steps < 1:
            raise ValueError(f"`update_steps` must be >= 1, got {update_steps}.")
        if init not in ("proportional", "uniform"):
            raise ValueError(f"`init` must be 'proportional' or 'uniform', got {init!r}.")
        self.lr, self.floor, self.temperature = float(lr), float(floor), float(temperature)
        self.signal, self.update_steps = signal, int(update_steps)
        self.requires_evaluation = signal == "eval_loss"
        start = self.task_sizes / self.task_sizes.sum() if init == "proportional" else torch.full((k,), 1.0 / k, dtype=torch.float64)
        self.scores = start.log() * self.temperature
        self.previous = torch.full((k,), float("nan"), dtype=torch.float64)
        self.window = torch.zeros(2, k, dtype=torch.float64)
        self.history = torch.zeros(0, k, dtype=torch.float64)
        self.task_names: list[str] | None = None  # set by the trainer, to read `eval_<task>_loss`

    def probabilities(self, epoch, num_epochs):
        softmax = torch.softmax(self.scores / self.temperature, dim=0)
        return self.floor + (1 - len(softmax) * self.floor) * softmax

    def probabilities_at(self, step, epoch, num_epochs):
        if step < len(self.history):
            return self.history[step]
        current = self.probabilities(epoch, num_epochs)
        while len(self.history) <= step:
            self.history = torch.cat([self.history, current.unsqueeze(0)])
        return current

    def update(self, losses: torch.Tensor) -> torch.Tensor:
        """Score update from the current per-task losses (NaN = not observed). Returns the rewards used."""
        observed = torch.isfinite(losses) & torch.isfinite(self.previous) & (self.previous > 0)
        rewards = torch.zeros_like(losses)
        if observed.sum() >= 2:  # a baseline needs at least two tasks to compare
            rewards[observed] = (self.previous[observed] - losses[observed]) / self.previous[observed]
            baseline = rewards[observed].mean()
            self.scores[observed] += self.lr * (rewards[observed] - baseline)
        self.previous = torch.where(torch.isfinite(losses), losses, self.previous)
        return rewards

    def on_evaluate(self, step, metrics):
        if self.signal != "eval_loss" or self.task_names is None:
            return
        losses = torch.tensor(
            [float(metrics.get(f"eval_{name}_loss", float("nan"))) for name in self.task_names], dtype=torch.float64
        )
        if torch.isfinite(losses).any():
            self.update(losses)

    def on_step_end(self, step, task_losses):
        if self.signal != "train_loss" or self.task_names is None:
            return
        for name, value in task_losses.items():
            i = self.task_names.index(name)
            self.window[0, i] += value
            self.window[1, i] += 1
        if (step + 1) % self.update_steps == 0:
            means = torch.where(self.window[1] > 0, self.window[0] / self.window[1].clamp(min=1), torch.nan)
            self.update(means)
            self.window.zero_()

    def state_dict(self):
        return {"scores": self.scores, "previous": self.previous, "window": self.window, "history": self.history}

    def load_state_dict(self, state):
        missing = [key for key in ("scores", "previous", "window", "history") if key not in state]
        if missing:
            raise KeyError(f"Learned-sampler state is missing {missing}; was the checkpoint written with sampling='learned'?")
        self.scores = state["scores"].double().clone()
        self.previous = state["previous"].double().clone()
        self.window = state["window"].double().clone()
        self.history = state["history"].double().clone()
