"""What learned sharing schemes show a person (their training callback is `hf_mtl.training.callbacks.sharing`): plots, `expert_gates.png` (task x expert gate weights,
MMoE/PLE) and `adashare_policy.png` (task x layer execute probabilities and the fixed policy, AdaShare).

matplotlib runs on its file-only `Agg` backend, so plotting works on servers without a display.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np


GATES_JSON, GATES_PNG = "expert_gates.json", "expert_gates.png"
POLICY_JSON, POLICY_PNG = "adashare_policy.json", "adashare_policy.png"


def write_json(output_dir: str, name: str, content: dict[str, Any]) -> str:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, name)
    with open(path + ".tmp", "w") as handle:
        json.dump(content, handle, indent=2)
    os.replace(path + ".tmp", path)  # a reader never sees half a file
    return path


def write_gate_report(output_dir: str, scheme: str, config, gate_weights: dict[str, list[float]], expert_names) -> list[str]:
    """`expert_gates.json` and `expert_gates.png` from `{task: mean gate weights}` (MMoE / PLE)."""
    tasks = [task for task in config.task_names if task in gate_weights]
    matrix = [gate_weights[task] for task in tasks]
    content = {
        "method": f"{scheme}: mean softmax gate weight of each expert over the task's training rows of the last "
        "logging window",
        "sharing_kwargs": dict(config.sharing_kwargs),
        "tasks": tasks,
        "experts": list(expert_names),
        "gate_weights": matrix,
    }
    json_path = write_json(output_dir, GATES_JSON, content)
    return [json_path, plot_expert_gates(matrix, tasks, expert_names, os.path.join(output_dir, GATES_PNG), scheme)]


def write_policy_report(output_dir: str, names, probabilities: dict[str, list[float]], policy: dict[str, list[int]]) -> list[str]:
    """`adashare_policy.json` and `adashare_policy.png` (AdaShare)."""
    content = {
        "method": "AdaShare (Sun et al. 2020): per-task execute/skip decision of every transformer layer, "
        "straight-through Gumbel-softmax search, fixed as execute = P(execute) >= 0.5",
        "tasks": list(names),
        "policy": [policy[t] for t in names],
        "execute_probability": [probabilities[t] for t in names],
        "layers_executed": {t: sum(policy[t]) for t in names},
    }
    json_path = write_json(output_dir, POLICY_JSON, content)
    png = plot_layer_policy([probabilities[t] for t in names], [policy[t] for t in names], names,
                            os.path.join(output_dir, POLICY_PNG))
    return [json_path, png]


def _heatmap(matrix, row_labels, column_labels, path, title, xlabel, cmap, texts=None, colorbar_label="", vmax=1.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=float)
    rows, columns = matrix.shape
    fig, ax = plt.subplots(figsize=(0.9 * columns + 3.0, 0.55 * rows + 2.0))
    image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(columns), labels=column_labels, rotation=45 if columns > 6 else 0, ha="right" if columns > 6 else "center")
    ax.set_yticks(range(rows), labels=row_labels)
    ax.set_xlabel(xlabel)
    for i in range(rows):
        for j in range(columns):
            text = texts[i][j] if texts is not None else f"{matrix[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if matrix[i, j] > 0.6 * vmax else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=colorbar_label)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_expert_gates(matrix, task_names: Sequence[str], expert_names: Sequence[str], path: str, scheme: str = "mmoe") -> str:
    """Heat-map of the mean gate weight each task gives each expert (rows sum to 1). The colour scale runs from 0 to
    the largest weight, so preferences show even when gates are close to uniform; cells print the values."""
    title = f"Expert gate weights per task ({scheme.upper()})"
    if any(name.startswith("task_") for name in expert_names):
        title += "\ntask_<j>: the row's own task-specific experts"
    vmax = float(np.max(matrix)) if np.size(matrix) else 1.0
    return _heatmap(matrix, task_names, expert_names, path, title, "expert", "Blues", colorbar_label="mean gate weight",
                    vmax=max(vmax, 1e-6))


def plot_layer_policy(probabilities, policy, task_names: Sequence[str], path: str) -> str:
    """Heat-map of each task's probability of executing each layer, with the fixed decision written in each cell."""
    policy = np.asarray(policy, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    texts = [[f"{'run' if policy[i, j] else 'skip'}\n{probabilities[i, j]:.2f}" for j in range(policy.shape[1])] for i in range(policy.shape[0])]
    rows = [f"{task} ({int(policy[i].sum())}/{policy.shape[1]})" for i, task in enumerate(task_names)]
    columns = [str(j) for j in range(policy.shape[1])]
    title = "AdaShare layer policy: P(execute) per task and layer\n(task (layers run / total); cell: fixed decision)"
    return _heatmap(probabilities, rows, columns, path, title, "transformer layer", "Greens", texts, "P(execute)")
