"""PNG plots a person would rather look at than read: training curves (per-task loss, task weights and per-task
evaluation over steps, from `trainer.state.log_history`) and the bar chart of a transfer report's deltas.

matplotlib runs on its file-only `Agg` backend, so plotting works on servers without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _series(log_history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(
    log_history: Sequence[Mapping[str, Any]],
    path: str | Path,
    task_names: Sequence[str],
    main_metrics: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path | None:
    """Per-task training loss (`loss_<task>`), task weights (`weight_<task>`) and, when the run evaluated during
    training, each task's main metric (`eval_<task>_<metric>`) against the optimizer step. Returns the PNG path, or
    `None` when the history holds no per-task losses (nothing was logged: raise `logging_steps` below the run length)."""
    panels = [("Training loss per task", "loss_{}", "loss")]
    if any(f"weight_{name}" in entry for entry in log_history for name in task_names):
        panels.append(("Task weights", "weight_{}", "weight"))
    metrics = dict(main_metrics or {})
    eval_steps = {entry.get("step") for entry in log_history for name in task_names if f"eval_{name}_{metrics.get(name)}" in entry}
    if len(eval_steps) > 1:  # one final evaluation is a table (metrics.json), not a curve
        panels.append(("Evaluation (main metric per task)", "eval_{}_{}", "score"))
    if not any(f"loss_{name}" in entry for entry in log_history for name in task_names):
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, (panel_title, pattern, ylabel) in zip(axes[0], panels):
        for i, name in enumerate(task_names):
            key = pattern.format(name, metrics.get(name)) if pattern.count("{}") == 2 else pattern.format(name)
            steps, values = _series(log_history, key)
            if steps:
                label = f"{name} ({metrics[name]})" if pattern.count("{}") == 2 else name
                axis.plot(steps, values, marker="o" if len(steps) < 12 else None, ms=3, label=label,
                          color=colors[i % len(colors)])
        if ylabel == "loss":
            values = [v for line in axis.get_lines() for v in line.get_ydata() if v > 0]
            if values and max(values) / min(values) > 20:  # e.g. a regression MSE next to cross-entropies
                axis.set_yscale("log")
        axis.set_title(panel_title)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_transfer_deltas(
    rows: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None, ylabel: str = "multi-task − single-task"
) -> Path:
    """One bar per task: multi-task minus single-task score of its main metric, green where multi-task is better
    (for lower-is-better metrics such as `mse` that is a negative delta), red where it is worse; error bars are the
    standard deviation of the delta over seeds."""
    names = [f"{row['task']}\n({row['metric']})" for row in rows]
    deltas = [row["delta"] for row in rows]
    errors = [row.get("delta_std") or 0.0 for row in rows]
    colors = ["#2e7d32" if row["better"] else "#c62828" for row in rows]
    figure, axis = plt.subplots(figsize=(max(4.5, 1.3 * len(rows) + 2), 3.8))
    axis.bar(range(len(rows)), deltas, yerr=errors if any(errors) else None, color=colors, capsize=4)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(rows)), names, fontsize=8)
    axis.set_ylabel(ylabel)
    axis.set_title(title or "Transfer: multi-task vs single-task (green = multi-task better)")
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def _save(figure, path: str | Path) -> Path:
    """Lay out, write (making the folder) and close a figure; the one place plots are saved."""
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
