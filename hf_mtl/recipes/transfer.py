"""`run_transfer_report`: the multi-task model and one single-task model per task, under the same budget and
seed(s), then the table (Markdown + JSON), the bar chart of the deltas, the training curves, and the table in the
multi-task model's card. The budget is defined in `hf_mtl.evaluation.transfer` (`BUDGET_DEFINITION`).

Layout of the output directory:

    transfer.md, transfer.json, transfer_deltas.png
    multi_task/                 the multi-task model of the first seed: weights, tokenizer, card with the table,
                                metrics.json, training_curves.png
    runs/seed<S>/multi_task/    metrics.json + training_curves.png of the other seeds' multi-task runs
    runs/seed<S>/single_<task>/ metrics.json + training_curves.png of every single-task run (no weights saved)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..evaluation.transfer import card_rows, steps_for_rows, trainer_task_rows, transfer_table, write_transfer_report
from .loader import Recipe
from .run import train_recipe


# Every run of a report: no intermediate checkpoints (only scores are compared), no Hub pushes (push the model you
# keep with `hf-mtl train`), and the final model is the last one, not a "best" checkpoint picked on validation data.
RUN_SETTINGS = {"save_strategy": "no", "load_best_model_at_end": False, "push_to_hub": False}


def run_transfer_report(
    recipe: Recipe,
    seeds: list[int],
    output_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and compare; returns `{"rows": [...], "files": {...}}`. Needs a validation split for every task."""
    if len(recipe.tasks) < 2:
        raise recipe.error("tasks", "a transfer report compares multi-task with single-task training: give at least two tasks.")
    if not seeds:
        raise ValueError("Give at least one seed (e.g. --seeds 1,2,3).")
    for task in recipe.tasks:  # checked before any training: every task is scored on its validation split
        if task.source_kind == "files" and task.data.get("validation") is None or task.data.get("validation", "") is None:
            raise recipe.error(f"tasks.{task.name}.data.validation", "a transfer report scores every task on its "
                               "validation split: give this task one (a file, or a Hub split name).")
    out = Path(output_dir) if output_dir else Path(recipe.training["output_dir"]) / "transfer"
    total = len(seeds) * (1 + len(recipe.tasks))
    scores: dict[int, dict[str, dict[str, float]]] = {}
    budgets: dict[int, dict[str, dict[str, int]]] = {}
    kept = None  # the first seed's multi-task run: its model gets the card with the table
    main_metrics: dict[str, str] = {}
    run = 0
    for seed_index, seed in enumerate(seeds):
        run += 1
        multi_dir = out / "multi_task" if seed_index == 0 else out / "runs" / f"seed{seed}" / "multi_task"
        log(f"[{run}/{total}] seed {seed}: multi-task run on {', '.join(recipe.task_names)}")
        multi = train_recipe(recipe, changes={**RUN_SETTINGS, "seed": seed, "output_dir": str(multi_dir)},
                             save_model=seed_index == 0, log=lambda message: None)
        _check_scores(recipe, multi)
        main_metrics = multi.main_metrics
        scores[seed] = {"multi": {t: multi.metrics[t][m] for t, m in main_metrics.items()}, "single": {}}
        rows = trainer_task_rows(multi.trainer)
        args = multi.trainer.args
        rows_per_step = multi.trainer._train_batch_size * args.world_size * args.gradient_accumulation_steps
        budgets[seed] = {task: {"rows": count, "steps": steps_for_rows(count, rows_per_step)} for task, count in rows.items()}
        if seed_index == 0:
            kept = multi.trainer
        else:
            del multi
        for task in recipe.task_names:
            run += 1
            steps = budgets[seed][task]["steps"]
            log(f"[{run}/{total}] seed {seed}: single-task run on {task!r} ({budgets[seed][task]['rows']} rows, {steps} steps)")
            single = train_recipe(
                recipe.subset([task]),
                changes={**RUN_SETTINGS, "seed": seed, "max_steps": steps,
                         "output_dir": str(out / "runs" / f"seed{seed}" / f"single_{task}")},
                save_model=False,
                log=lambda message: None,
            )
            scores[seed]["single"][task] = single.metrics[task][main_metrics[task]]
            del single
    rows = transfer_table(scores, main_metrics, budgets)
    meta = {"recipe": recipe.source, "backbone": recipe.model_args.backbone, "seeds": list(seeds), "runs": total}
    files: dict[str, Path] = {}
    if kept is not None and kept.is_world_process_zero():
        files = write_transfer_report(rows, out, meta)
        kept.model_card_kwargs["transfer_table"] = card_rows(rows)
        files["card"] = Path(kept.write_model_card(str(out / "multi_task")))
        files["curves"] = out / "multi_task" / "training_curves.png"
        log(f"hf-mtl: transfer report in {out} ({', '.join(sorted(p.name for p in files.values()))})")
    return {"rows": rows, "files": files}


def _check_scores(recipe: Recipe, result) -> None:
    missing = [task for task in recipe.task_names if task not in result.metrics]
    if missing:
        raise recipe.error(
            f"tasks.{missing[0]}.data",
            "a transfer report scores every task on its validation split, and this task has none: give it one "
            "(validation: <file or Hub split>).",
        )
