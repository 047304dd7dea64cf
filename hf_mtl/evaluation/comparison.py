"""Transfer reports: is each task better off trained with the others (multi-task) or alone (single-task)?

The comparison is only fair under the same budget. Here that means: **each single-task run trains on as many rows
of its task as the multi-task run drew from that task**, with the same hyperparameters (batch size, learning rate,
schedule shape, weighting, sequence length) and the same seed. The rows are counted from the multi-task run's batch
plan, which is a deterministic function of the seed (`MultiTaskBatchSampler.step_plan`), so the count is exact, not
an expectation. With `batching="per_task"` that is the same number of optimizer updates on the task; with `mixed`
batches, the same number of rows, in `ceil(rows / rows_per_step)` steps. Each run's learning-rate schedule spans its
own steps (warmup given as a ratio scales with it). Several seeds repeat the whole comparison; the table then gives
the mean and the standard deviation over seeds.
"""

from __future__ import annotations

import bisect
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..sampling import MultiTaskBatchSampler, TaskSampler
from .metrics import LOWER_IS_BETTER


BUDGET_DEFINITION = (
    "Same budget: each single-task run trains on as many rows of its task as the multi-task run drew from that task "
    "(counted exactly from the multi-task run's seeded batch plan), with the same hyperparameters and seed; with "
    "per-task batching this is the same number of optimizer updates on the task."
)


def planned_task_rows(
    task_sizes: Sequence[int],
    task_sampler: TaskSampler,
    *,
    total_steps: int,
    batch_size: int,
    batching: str,
    gradient_accumulation_steps: int = 1,
    world_size: int = 1,
    seed: int = 0,
) -> list[int]:
    """Rows of each task that a multi-task run of `total_steps` optimizer steps draws (all processes together),
    replaying the trainer's batch plan epoch by epoch."""
    sampler = MultiTaskBatchSampler(task_sizes, task_sampler, batch_size=batch_size, batching=batching,
                                    gradient_accumulation_steps=gradient_accumulation_steps, num_replicas=world_size,
                                    rank=0, seed=seed)
    sampler.num_epochs = sampler.epochs_for_steps(total_steps)  # as the trainer sets it for a run of that length
    counts, step, epoch = [0] * len(task_sizes), 0, 0
    while step < total_steps:
        for rows in sampler.step_plan(epoch):
            for row in rows:
                counts[bisect.bisect_right(sampler.offsets, row) - 1] += 1
            step += 1
            if step >= total_steps:
                break
        epoch += 1
    return counts


def trainer_task_rows(trainer) -> dict[str, int]:
    """`planned_task_rows` for a `MultiTaskTrainer` that has trained (its `state.max_steps` is the run length)."""
    from ..data.joint import stream_rows

    args = trainer.args
    sizes = list(trainer.train_dataset.sizes)  # per stream of rows (a task, or an input group: hf_mtl.data.joint)
    counts = planned_task_rows(
        sizes, trainer.task_sampler, total_steps=trainer.state.max_steps, batch_size=trainer._train_batch_size,
        batching=args.batching, gradient_accumulation_steps=args.gradient_accumulation_steps,
        world_size=args.world_size, seed=args.data_seed if args.data_seed is not None else args.seed,
    )
    return stream_rows(trainer.train_streams, counts)


def steps_for_rows(rows: int, rows_per_step: int) -> int:
    """Optimizer steps a single-task run needs to see `rows` rows (at least one)."""
    return max(1, math.ceil(rows / rows_per_step))


def paired_comparison(
    baseline: Sequence[float], candidate: Sequence[float], lower_is_better: bool, better: str, worse: str
) -> tuple[float, float | None, bool, str]:
    """Per-seed deltas `candidate - baseline` -> (mean delta, their standard deviation or None for one seed, whether
    the candidate is better given the metric's direction, verdict). The verdict is "within seed spread" when |mean
    delta| does not exceed the deltas' standard deviation, "no difference" at zero, else `better` or `worse`."""
    deltas = [c - b for c, b in zip(candidate, baseline)]
    delta = statistics.fmean(deltas)
    spread = statistics.stdev(deltas) if len(deltas) > 1 else None
    is_better = delta < 0 if lower_is_better else delta > 0
    if spread is not None and abs(delta) <= spread:
        verdict = "within seed spread"
    elif delta == 0:
        verdict = "no difference"
    else:
        verdict = better if is_better else worse
    return delta, spread, is_better, verdict


def transfer_table(
    scores: Mapping[int, Mapping[str, Mapping[str, float]]],
    main_metrics: Mapping[str, str],
    budgets: Mapping[int, Mapping[str, Mapping[str, int]]] | None = None,
) -> list[dict[str, Any]]:
    """Rows `{task, metric, single, multi, delta, *_std, better, verdict, ...}` from `scores[seed]["single"|"multi"]
    [task]` (each run's main-metric score). `delta = multi - single`; `better` accounts for the metric's direction;
    the verdict says "within seed spread" when |mean delta| does not exceed the standard deviation of the deltas."""
    seeds = sorted(scores)
    rows = []
    for task, metric in main_metrics.items():
        single = [scores[s]["single"][task] for s in seeds]
        multi = [scores[s]["multi"][task] for s in seeds]
        lower = metric in LOWER_IS_BETTER
        delta, spread, better, verdict = paired_comparison(
            single, multi, lower, better="multi-task better", worse="single-task better (negative transfer)"
        )
        starved = budgets and any(budgets[s][task]["rows"] == 0 for s in seeds)
        if starved:
            verdict = "not comparable: the multi-task run drew no rows of this task (train longer)"
        row = {
            "task": task, "metric": metric, "lower_is_better": lower, "seeds": seeds,
            "single": statistics.fmean(single), "multi": statistics.fmean(multi), "delta": delta,
            "single_std": statistics.stdev(single) if len(seeds) > 1 else None,
            "multi_std": statistics.stdev(multi) if len(seeds) > 1 else None, "delta_std": spread,
            "single_scores": single, "multi_scores": multi, "better": better, "verdict": verdict,
        }
        if budgets:
            row["budget_rows"] = [budgets[s][task]["rows"] for s in seeds]
            row["single_task_steps"] = [budgets[s][task]["steps"] for s in seeds]
        rows.append(row)
    return rows


def card_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows as `build_model_card(transfer_table=...)` takes them."""
    keys = ("task", "metric", "single", "multi", "delta", "single_std", "multi_std")
    return [{key: row[key] for key in keys if row.get(key) is not None} for row in rows]


def format_markdown(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    def score(mean, std):
        return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")

    seeds = meta.get("seeds", [])
    lines = [
        "# Transfer report: multi-task vs single-task",
        "",
        f"Recipe `{meta.get('recipe')}`, backbone `{meta.get('backbone')}`, seed(s) {', '.join(map(str, seeds))}. "
        "Δ = multi-task − single-task on each task's main metric"
        + (" (mean ± standard deviation over seeds)." if len(seeds) > 1 else " (one seed: no spread; use --seeds 1,2,3)."),
        "",
        f"**Budget.** {BUDGET_DEFINITION}",
        "",
        "| Task | Metric | Single-task | Multi-task | Δ | Verdict | Rows of the task seen (steps alone) |",
        "|------|--------|-------------|------------|---|---------|-------------------------------------|",
    ]
    for row in rows:
        budget = ", ".join(f"{r} ({s})" for r, s in zip(row.get("budget_rows", []), row.get("single_task_steps", [])))
        direction = " (lower is better)" if row["lower_is_better"] else ""
        delta = f"{row['delta']:+.4f}" + (f" ± {row['delta_std']:.4f}" if row["delta_std"] is not None else "")
        lines.append(
            f"| `{row['task']}` | {row['metric']}{direction} | {score(row['single'], row['single_std'])} | "
            f"{score(row['multi'], row['multi_std'])} | {delta} | {row['verdict']} | {budget} |"
        )
    if meta.get("parameters"):
        ratio = meta["parameters"]["ratio_to_one_single_task_model"]
        lines += ["", f"Parameters: the multi-task model has {meta['parameters']['multi_task']:,}, {ratio:.2f}x one "
                  "single-task model (encoder + its head)."]
    lines += ["", "![Deltas](transfer_deltas.png)", ""]
    return "\n".join(lines)


def write_transfer_report(rows: Sequence[Mapping[str, Any]], output_dir: str | Path, meta: Mapping[str, Any]) -> dict[str, Path]:
    """`transfer.md`, `transfer.json` and `transfer_deltas.png` in `output_dir`."""
    from ..utils.plotting import plot_transfer_deltas

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "transfer.md", "json": out / "transfer.json", "plot": out / "transfer_deltas.png"}
    files["markdown"].write_text(format_markdown(rows, meta), encoding="utf-8")
    payload = {**meta, "budget": BUDGET_DEFINITION, "tasks": list(rows)}
    files["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    plot_transfer_deltas(rows, files["plot"])
    return files
