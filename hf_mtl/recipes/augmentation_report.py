"""`run_augmentation_report`: does a task's `augment:` entry help? Each task that has one is trained alone twice per
seed, without and with its augmentation, under the same budget, and scored on its (never augmented) validation split.

**Same budget** means the same number of optimizer updates of the same batch size: the augmented run sees more
distinct rows, not more updates, so a gain comes from the variety of the data and not from training longer. The
number of updates is the recipe's `max_steps` when set, else `num_train_epochs` over the rows *without*
augmentation. The augmentation's own seed follows the run's seed, so each seed draws other augmented rows.

Layout of the output directory:

    augmentation.md, augmentation.json, augmentation_deltas.png
    runs/seed<S>/<task>_plain/, runs/seed<S>/<task>_augmented/   metrics.json + training_curves.png (no weights)
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..evaluation.comparison import paired_comparison
from ..evaluation.metrics import LOWER_IS_BETTER
from .loader import Recipe
from .run import train_recipe


RUN_SETTINGS = {"save_strategy": "no", "load_best_model_at_end": False, "push_to_hub": False}
BUDGET_DEFINITION = (
    "Same budget: both runs of a task make the same number of optimizer updates with the same batch size, seed and "
    "hyperparameters; the augmented run draws them from more distinct rows. Validation data is never augmented."
)


def run_augmentation_report(
    recipe: Recipe,
    seeds: list[int],
    output_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and compare; returns `{"rows": [...], "files": {...}}`."""
    tasks = [task for task in recipe.tasks if task.augment is not None]
    if not tasks:
        raise recipe.error("tasks", "an augmentation report compares training with and without `augment:`: give at "
                           "least one task an `augment:` entry (e.g. augment: {ratio: 1.0}).")
    if not seeds:
        raise ValueError("Give at least one seed (e.g. --seeds 1,2,3).")
    for task in tasks:  # before any training: every compared task is scored on its validation split
        if task.source_kind == "files" and task.data.get("validation") is None:
            raise recipe.error(f"tasks.{task.name}.data.validation", "an augmentation report scores each task on its "
                               "validation split: give this task one (a file, or a Hub split name).")
    out = Path(output_dir) if output_dir else Path(recipe.training["output_dir"]) / "augmentation"
    scores: dict[str, dict[str, list[float]]] = {task.name: {"plain": [], "augmented": []} for task in tasks}
    details: dict[str, dict[str, Any]] = {}
    metrics: dict[str, str] = {}
    total, run = 2 * len(seeds) * len(tasks), 0
    for seed in seeds:
        for task in tasks:
            steps = None
            for variant in ("plain", "augmented"):
                run += 1
                augment = None if variant == "plain" else {**task.augment, "seed": seed}
                single = recipe.subset([task.name])
                single = dataclasses.replace(single, tasks=[dataclasses.replace(single.tasks[0], augment=augment)])
                changes = {**RUN_SETTINGS, "seed": seed, "output_dir": str(out / "runs" / f"seed{seed}" / f"{task.name}_{variant}")}
                if steps is not None:
                    changes["max_steps"] = steps
                log(f"[{run}/{total}] seed {seed}: {task.name!r} {variant}" + (f" ({steps} steps)" if steps else ""))
                result = train_recipe(single, changes=changes, save_model=False, log=lambda message: None)
                if task.name not in result.metrics:
                    raise recipe.error(f"tasks.{task.name}.data.validation", "the run produced no validation score.")
                metrics[task.name] = result.main_metrics[task.name]
                scores[task.name][variant].append(result.metrics[task.name][metrics[task.name]])
                rows_seen = len(result.data[task.name].splits["train"])
                details.setdefault(task.name, {"train_rows": {}, "steps": []})["train_rows"][variant] = rows_seen
                if steps is None:
                    steps = result.trainer.state.global_step
                    details[task.name]["steps"].append(steps)
                del result
    rows = augmentation_table(scores, metrics, details)
    files = write_augmentation_report(rows, out, {"recipe": recipe.source, "backbone": recipe.model_args.backbone,
                                                  "seeds": list(seeds), "runs": total})
    log(f"hf-mtl: augmentation report in {out} ({', '.join(sorted(p.name for p in files.values()))})")
    return {"rows": rows, "files": files}


def augmentation_table(scores: dict[str, dict[str, list[float]]], metrics: dict[str, str],
                       details: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows `{task, metric, plain, augmented, delta, *_std, better, verdict}`; `delta = augmented - plain` per seed,
    averaged; "within seed spread" when |mean delta| does not exceed the deltas' standard deviation."""
    rows = []
    for task, runs in scores.items():
        plain, augmented = runs["plain"], runs["augmented"]
        lower = metrics[task] in LOWER_IS_BETTER
        delta, spread, better, verdict = paired_comparison(
            plain, augmented, lower, better="augmentation helps", worse="augmentation hurts"
        )
        rows.append({
            "task": task, "metric": metrics[task], "lower_is_better": lower, "plain": statistics.fmean(plain),
            "augmented": statistics.fmean(augmented), "delta": delta, "delta_std": spread,
            "plain_std": statistics.stdev(plain) if len(plain) > 1 else None,
            "augmented_std": statistics.stdev(augmented) if len(augmented) > 1 else None,
            "plain_scores": plain, "augmented_scores": augmented, "better": better, "verdict": verdict,
            **({} if details is None else details.get(task, {})),
        })
    return rows


def format_markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def score(value, std):
        return f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else "")

    lines = [
        f"# Augmentation report: {Path(meta['recipe']).name}",
        "",
        f"Backbone `{meta['backbone']}`; seeds {', '.join(map(str, meta['seeds']))} ({meta['runs']} runs); mean ± "
        "standard deviation over seeds.",
        "",
        f"**Budget.** {BUDGET_DEFINITION}",
        "",
        "| Task | Metric | Without | With augmentation | Δ | Verdict | Training rows (without → with), updates |",
        "|------|--------|---------|-------------------|---|---------|------------------------------------------|",
    ]
    for row in rows:
        train_rows = row.get("train_rows", {})
        budget = f"{train_rows.get('plain', '?')} → {train_rows.get('augmented', '?')}, {'/'.join(map(str, row.get('steps', [])))}"
        delta = f"{row['delta']:+.4f}" + (f" ± {row['delta_std']:.4f}" if row["delta_std"] is not None else "")
        lines.append(f"| `{row['task']}` | {row['metric']} | {score(row['plain'], row['plain_std'])} | "
                     f"{score(row['augmented'], row['augmented_std'])} | {delta} | {row['verdict']} | {budget} |")
    lines += ["", "![Deltas](augmentation_deltas.png)", ""]
    return "\n".join(lines)


def write_augmentation_report(rows: list[dict[str, Any]], output_dir: str | Path, meta: dict[str, Any]) -> dict[str, Path]:
    from ..utils.plotting import plot_transfer_deltas

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": out / "augmentation.md", "json": out / "augmentation.json"}
    files["markdown"].write_text(format_markdown(rows, meta), encoding="utf-8")
    files["json"].write_text(json.dumps({"meta": meta, "budget": BUDGET_DEFINITION, "rows": rows}, indent=2) + "\n",
                             encoding="utf-8")
    files["plot"] = plot_transfer_deltas(
        rows, out / "augmentation_deltas.png", title="Augmentation: with − without (green = augmentation helps)",
        ylabel="with − without augmentation",
    )
    return files


__all__ = ["BUDGET_DEFINITION", "augmentation_table", "run_augmentation_report", "write_augmentation_report"]
