"""The Gumbel-softmax policy as plain tensor functions: the starting logits, the temperature schedule, the sampled
(search) and deterministic decisions handed to the `SkippableLayer`s, and the two regularisers. Kept free of the
model so the maths of the package docstring can be read, and tested, in one place."""

from __future__ import annotations

import math

import torch
from torch import nn


def initial_logits(execute_probability: float, num_layers: int) -> torch.Tensor:
    """`[num_layers, 2]` (execute, skip) logits whose softmax executes every layer with `execute_probability`."""
    p = execute_probability
    return torch.tensor([[math.log(p), math.log(1 - p)]] * num_layers)


def annealed_temperature(initial: float, final: float, step: int, horizon: int) -> float:
    """Exponential decay from `initial` to `final` over `horizon` optimizer steps, then `final`."""
    fraction = min(step / max(horizon - 1, 1), 1.0)  # the last step of the search runs at final_temperature
    return initial * (final / initial) ** fraction


def execute_probabilities(logits: torch.Tensor) -> list[float]:
    """One task's probability of executing each layer, `softmax(logits)[:, 0]`."""
    return torch.softmax(logits.detach().float(), -1)[:, 0].tolist()


def sampled_decisions(logits: torch.Tensor, temperature: float, task_ids: torch.Tensor,
                      num_layers: int) -> list[tuple[str, torch.Tensor]]:
    """Search: one hard straight-through Gumbel-softmax draw per task and layer from `logits` `[tasks, layers, 2]`;
    each layer gets `("soft", d)` with `d` the draw of each row's task (gradients flow to the logits)."""
    samples = nn.functional.gumbel_softmax(logits, tau=temperature, hard=True, dim=-1)[..., 0]
    row_decisions = samples[task_ids]  # [rows, layers], straight-through gradients to the logits
    return [("soft", row_decisions[:, i]) for i in range(num_layers)]


def fixed_decisions(policy: dict[str, list[int]], names: list[str], task_ids: torch.Tensor,
                    num_layers: int) -> list[tuple[str, torch.Tensor]]:
    """Every other case: each layer gets `("rows", indices)` of the rows whose task executes it under `policy`."""
    execute = torch.tensor([policy[t] for t in names], dtype=torch.bool)[task_ids.cpu()]  # [rows, layers]
    return [("rows", execute[:, i].nonzero(as_tuple=True)[0].to(task_ids.device)) for i in range(num_layers)]


def regularisers(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The sparsity and sharing losses of the package docstring, from every task's logits `[tasks, layers, 2]`."""
    log_p = torch.log_softmax(logits.float(), dim=-1)[..., 0]
    p = log_p.exp()  # [tasks, layers]
    sparsity = log_p.mean()
    num_tasks = p.shape[0]
    if num_tasks > 1:
        num_layers = p.shape[1]
        depth = (num_layers - torch.arange(num_layers, device=p.device, dtype=p.dtype)) / num_layers
        first, second = torch.triu_indices(num_tasks, num_tasks, offset=1, device=p.device)
        sharing = ((p[first] - p[second]).abs() * depth).mean()
    else:
        sharing = p.sum() * 0.0
    return {"adashare_sparsity": sparsity, "adashare_sharing": sharing}
