"""`run_transfer_report`: the multi-task model and one single-task model per task, under the same budget and
seed(s), then the table (Markdown + JSON), the bar chart of the deltas and the multi-task model's card. The budget is
defined in `hf_mtl.evaluation.comparison` (`BUDGET_DEFINITION`).

Runs are planned first, then trained (or reused): every run has a fingerprint (`run_cache.py`) and a folder
`runs/seed<S>/<label>-<fingerprint>/` holding `metrics.json`, `training_curves.png` and `run.json`. A run whose
record is already there is not trained again, so an interrupted report continues, a report with more seeds trains
only the new ones, and an ablation of the multi-task model (pointing `runs_dir` at the same folder) reuses the
single-task baselines: a single-task baseline is plain fine-tuning of the task, without the options that only mean
something with several tasks (`SINGLE_TASK_MODEL`, `SINGLE_TASK_TRAINING`).

`jobs > 1` trains that many runs at once in worker processes, each with its share of the CPU threads: on a CPU
machine two one-thread runs finish far sooner than two two-thread runs one after the other.

Layout of the output directory: transfer.md, transfer.json, transfer_deltas.png, and (by default) runs/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ..evaluation.comparison import card_rows, planned_task_rows, steps_for_rows, transfer_table, write_transfer_report
from .loader import Recipe
from .run_cache import RunRecord, code_fingerprint, find_reusable, retrained_run_dir, run_dir_name, run_fingerprint


# Every run of a report: no intermediate checkpoints (only scores are compared), no Hub pushes (push the model you
# keep with `hf-mtl train`), and the final model is the last one, not a "best" checkpoint picked on validation data.
RUN_SETTINGS = {"save_strategy": "no", "load_best_model_at_end": False, "push_to_hub": False}
#: The kinds of run a report trains (what `retrain` names).
RUN_KINDS = ("multi_task", "single_task")
# What a single-task baseline leaves out: the model options that need several tasks (a task embedding of one task,
# a discriminator with one class, per-task copies of layers for one task are plain fine-tuning or nothing at all),
# and the training options that balance tasks. LoRA stays LoRA: its baseline is one adapter per task.
SINGLE_TASK_MODEL = {"task_embedding": "none", "adversarial": False}
SINGLE_TASK_TRAINING = {"batching": "per_task", "sampling": "proportional", "sampling_kwargs": None,
                        "weighting": "static", "weighting_kwargs": None, "adversarial_weight": 0.0,
                        "orthogonality_weight": 0.0, "loss_scaling": "none", "task_affinity_steps": 0}


@dataclass
class PlannedRun:
    """One training run of the report."""

    label: str  # "multi_task" or "single_<task>"
    seed: int
    recipe: Recipe
    changes: dict[str, Any]
    run_dir: Path
    fingerprint: str
    fingerprint_without_code: str
    steps: int
    save_model: bool = False

    @property
    def title(self) -> str:
        if self.label == "multi_task":
            return f"seed {self.seed}: multi-task run on {', '.join(self.recipe.task_names)}"
        return f"seed {self.seed}: single-task run on {self.recipe.task_names[0]!r}"


def _kind(label: str) -> str:
    return "multi_task" if label == "multi_task" else "single_task"


def single_task_recipe(recipe: Recipe, task: str) -> Recipe:
    """The baseline recipe of one task: the same backbone, data and hyperparameters, plain fine-tuning. A model of
    LoRA adapters on a frozen backbone is compared with one task's adapter on that backbone; with a trainable backbone
    (`freeze_backbone: false`) one adapter beside it is plain fine-tuning, so the baseline is that."""
    model = dict(SINGLE_TASK_MODEL)
    sharing_kwargs = recipe.config_kwargs.get("sharing_kwargs") or {}
    if recipe.config_kwargs.get("sharing", "hard") != "lora" or sharing_kwargs.get("freeze_backbone", True) is False:
        model.update(sharing="hard", sharing_kwargs={})
    # The second stage (refine_steps) stays: the baseline's head gets the same head-only steps on its encoder.
    return recipe.subset([task]).with_settings(model=model, training=SINGLE_TASK_TRAINING)


def planned_budget(recipe: Recipe, seed: int, task_sizes: dict[str, int]) -> dict[str, dict[str, int]] | None:
    """Rows of each task the multi-task run will draw and the single-task steps they make, from the seeded batch
    plan, before anything trains. `None` when the plan depends on training (a learned sampler)."""
    from ..data.joint import stream_rows, training_streams
    from ..sampling import MultiTaskBatchSampler, build_task_sampler

    args = recipe.training_arguments(**RUN_SETTINGS, seed=seed)
    streams = training_streams([task.placeholder_spec() for task in recipe.tasks])
    sizes = [task_sizes[stream[0]] for stream in streams]
    sampler = build_task_sampler(args.sampling, sizes, **args.sampling_kwargs)
    if sampler.learns:
        return None
    layout = dict(batch_size=args.per_device_train_batch_size, batching=args.batching,
                  gradient_accumulation_steps=args.gradient_accumulation_steps)
    plan = MultiTaskBatchSampler(sizes, sampler, num_replicas=args.world_size, **layout)
    total = plan.planned_steps(args.max_steps, args.num_train_epochs)
    counts = planned_task_rows(sizes, sampler, total_steps=total, world_size=args.world_size,
                               seed=args.data_seed if args.data_seed is not None else seed, **layout)
    rows_per_step = plan.rows_per_step
    budget = {name: {"rows": rows, "steps": steps_for_rows(rows, rows_per_step)}
              for name, rows in stream_rows(streams, counts).items()}
    budget["_total"] = {"rows": sum(counts), "steps": total}
    return budget


def _plan(recipe: Recipe, label: str, seed: int, changes: dict[str, Any], runs_dir: Path, steps: int,
          save_model: bool = False) -> PlannedRun:
    changes = {**RUN_SETTINGS, "seed": seed, **changes}
    fingerprint = run_fingerprint(recipe, changes)
    without_code = run_fingerprint(recipe, changes, include_code=False)
    run_dir = runs_dir / f"seed{seed}" / run_dir_name(label, without_code, code_fingerprint())
    return PlannedRun(label, seed, recipe, {**changes, "output_dir": str(run_dir)}, run_dir, fingerprint, without_code,
                      steps, save_model)


def execute_run(run: PlannedRun, threads: int | None = None) -> RunRecord:
    """Train one planned run and leave its record (in this process, or in a worker with `threads` CPU threads)."""
    from ..evaluation.comparison import trainer_task_rows
    from .run import train_recipe

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    start = time.time()
    result = train_recipe(run.recipe, changes=run.changes, save_model=run.save_model, log=lambda message: None)
    missing = [task for task in run.recipe.task_names if task not in result.metrics]
    if missing:
        raise run.recipe.error(f"tasks.{missing[0]}.data", "a transfer report scores every task on its validation "
                               "split, and this task has none: give it one (validation: <file or Hub split>).")
    record = RunRecord(
        label=run.label, seed=run.seed, fingerprint=run.fingerprint, fingerprint_without_code=run.fingerprint_without_code,
        code=code_fingerprint(), scores=result.metrics, steps=result.trainer.state.global_step,
        seconds=round(time.time() - start, 1), task_rows=trainer_task_rows(result.trainer) if run.label == "multi_task" else {},
        model_saved=run.save_model,
        parameters=sum(p.numel() for p in result.trainer.model.parameters()),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if result.trainer.is_world_process_zero():
        record.save(run.run_dir)
    return record


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class _Progress:
    """One line per run: reused, or done with its time and the estimated time left (seconds per step so far)."""

    def __init__(self, runs: list[PlannedRun], jobs: int, log: Callable[[str], None]):
        self.total, self.jobs, self.log = len(runs), jobs, log
        self.index = {id(run): i + 1 for i, run in enumerate(runs)}
        self.left = {id(run): run.steps for run in runs}
        self.seconds = self.steps = 0.0

    def reused(self, run: PlannedRun) -> None:
        self.left.pop(id(run), None)
        self.log(f"[{self.index[id(run)]}/{self.total}] {run.title}: reused ({run.run_dir})")

    def started(self, run: PlannedRun) -> None:
        self.log(f"[{self.index[id(run)]}/{self.total}] {run.title} ({run.steps} steps) ...")

    def finished(self, run: PlannedRun, record: RunRecord) -> None:
        self.left.pop(id(run), None)
        self.seconds += record.seconds
        self.steps += max(record.steps, 1)
        remaining = sum(self.left.values()) * self.seconds / self.steps / self.jobs
        eta = f"; about {_format_duration(remaining)} left" if self.left else ""
        self.log(f"[{self.index[id(run)]}/{self.total}] {run.title}: done in {_format_duration(record.seconds)}{eta}")


def run_transfer_report(
    recipe: Recipe,
    seeds: list[int],
    output_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    *,
    runs_dir: str | Path | None = None,
    jobs: int = 1,
    reuse_any_code: bool = False,
    retrain: Collection[str] = (),
    save_model: bool = True,
) -> dict[str, Any]:
    """Plan, train (or reuse) and compare; returns `{"rows": [...], "files": {...}, "runs": {...}}`.

    Args:
        runs_dir: where runs live (default `<output_dir>/runs`); share it between reports to reuse their runs.
        jobs: runs trained at once, each in its own process with `cpu_count // jobs` threads.
        reuse_any_code: reuse a finished run whose fingerprint differs only by the hf_mtl code (its record names the
            code it ran), e.g. after a change you know does not touch training.
        retrain: kinds of run (`RUN_KINDS`: "multi_task", "single_task") trained again even where a finished run
            matches, e.g. after a fix that changes only the multi-task model, with `reuse_any_code` keeping the
            single-task baselines. The earlier runs are kept beside the new ones.
        save_model: save the first seed's multi-task model (weights, tokenizer, card with the table) in its run folder.
    """
    from .data import load_recipe_data

    if len(recipe.tasks) < 2:
        raise recipe.error("tasks", "a transfer report compares multi-task with single-task training: give at least two tasks.")
    if not seeds:
        raise ValueError("Give at least one seed (e.g. --seeds 1,2,3).")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}.")
    unknown = sorted(set(retrain) - set(RUN_KINDS))
    if unknown:
        raise ValueError(f"retrain takes run kinds {', '.join(RUN_KINDS)}, got {', '.join(map(repr, unknown))}.")
    if jobs > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("jobs > 1 starts worker processes of its own: run the report without torchrun / accelerate "
                         "launch, or with jobs=1 to train each run data-parallel.")
    for task in recipe.tasks:  # checked before any training: every task is scored on its validation split
        if task.source_kind == "files" and task.data.get("validation") is None or task.data.get("validation", "") is None:
            raise recipe.error(f"tasks.{task.name}.data.validation", "a transfer report scores every task on its "
                               "validation split: give this task one (a file, or a Hub split name).")
    out = Path(output_dir) if output_dir else Path(recipe.training["output_dir"]) / "transfer"
    runs_dir = Path(runs_dir) if runs_dir else out / "runs"
    sizes = {name: len(task.splits["train"]) for name, task in load_recipe_data(recipe, splits=("train",)).items()}

    multi_runs: dict[int, PlannedRun] = {}
    budgets: dict[int, dict[str, dict[str, int]] | None] = {}
    for index, seed in enumerate(seeds):
        budgets[seed] = planned_budget(recipe, seed, sizes)
        total_steps = budgets[seed]["_total"]["steps"] if budgets[seed] else 0
        multi_runs[seed] = _plan(recipe, "multi_task", seed, {}, runs_dir, total_steps, save_model and index == 0)
    records: dict[tuple[int, str], RunRecord] = {}
    progress_runs = list(multi_runs.values())

    def single_runs(seed: int) -> list[PlannedRun]:
        budget = budgets[seed]
        return [_plan(single_task_recipe(recipe, task), f"single_{task}", seed, {"max_steps": budget[task]["steps"]},
                      runs_dir, budget[task]["steps"]) for task in recipe.task_names]

    planned_singles = {seed: single_runs(seed) for seed in seeds if budgets[seed] is not None}
    for seed in seeds:
        progress_runs += planned_singles.get(seed, [])
    progress = _Progress(progress_runs, jobs, log)

    def run_all(runs: list[PlannedRun]) -> None:
        todo = []
        for run in runs:
            if _kind(run.label) in retrain:
                run.run_dir = retrained_run_dir(run.run_dir)
                run.changes["output_dir"] = str(run.run_dir)
                todo.append(run)
                continue
            found = find_reusable(run.run_dir.parent, run.label, run.fingerprint, run.fingerprint_without_code,
                                  reuse_any_code)
            if found is not None and (not run.save_model or found[1].model_saved):
                run.run_dir, records[(run.seed, run.label)] = found  # the report points at the run it used
                progress.reused(run)
            else:
                todo.append(run)
        if jobs == 1:
            for run in todo:
                progress.started(run)
                records[(run.seed, run.label)] = record = execute_run(run)
                progress.finished(run, record)
            return
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {}
            for run in todo:
                progress.started(run)
                futures[pool.submit(execute_run, run, threads)] = run
            for future in as_completed(futures):
                run = futures[future]
                records[(run.seed, run.label)] = record = future.result()
                progress.finished(run, record)

    # Learned samplers decide the batch plan while training: their single-task budgets follow the multi-task run.
    adaptive = [seed for seed in seeds if budgets[seed] is None]
    run_all([multi_runs[seed] for seed in seeds] + [run for seed in seeds for run in planned_singles.get(seed, [])])
    for seed in adaptive:
        rows_per_step = recipe.training_arguments(**RUN_SETTINGS).per_device_train_batch_size
        task_rows = records[(seed, "multi_task")].task_rows
        budgets[seed] = {task: {"rows": rows, "steps": steps_for_rows(rows, rows_per_step)} for task, rows in task_rows.items()}
        planned_singles[seed] = single_runs(seed)
        progress.total += len(planned_singles[seed])
        progress.index.update({id(run): progress.total - len(planned_singles[seed]) + i + 1
                               for i, run in enumerate(planned_singles[seed])})
        run_all(planned_singles[seed])

    main_metrics = _main_metrics(recipe)
    scores, table_budgets = {}, {}
    for seed in seeds:
        multi = records[(seed, "multi_task")]
        budget = budgets[seed]
        if multi.task_rows and any(multi.task_rows[t] != budget[t]["rows"] for t in recipe.task_names):
            raise RuntimeError(f"seed {seed}: the multi-task run drew {multi.task_rows} rows, the plan said "
                               f"{ {t: budget[t]['rows'] for t in recipe.task_names} }; the budget would not be fair.")
        scores[seed] = {
            "multi": {t: multi.scores[t][m] for t, m in main_metrics.items()},
            "single": {t: records[(seed, f"single_{t}")].scores[t][m] for t, m in main_metrics.items()},
        }
        table_budgets[seed] = {t: budget[t] for t in recipe.task_names}
    rows = transfer_table(scores, main_metrics, table_budgets)
    meta = {
        "recipe": recipe.source, "backbone": recipe.model_args.backbone, "seeds": list(seeds), "runs": len(records),
        "multi_task_settings": {"model": recipe.raw.get("model", {}), "training": {
            k: v for k, v in recipe.training.items() if k != "output_dir"}},
        "single_task_settings": {"model": SINGLE_TASK_MODEL, "training": SINGLE_TASK_TRAINING},
        "run_dirs": {f"seed{run.seed}/{run.label}": str(run.run_dir) for run in progress_runs + [
            run for seed in adaptive for run in planned_singles[seed]]},
        "train_seconds": {f"seed{seed}/{label}": record.seconds for (seed, label), record in sorted(records.items())},
    }
    counts = {seed: (records[(seed, "multi_task")].parameters,
                     [records[(seed, f"single_{t}")].parameters for t in recipe.task_names]) for seed in seeds}
    multi_count, single_counts = counts[seeds[0]]
    if multi_count and all(single_counts):
        # What the multi-task model costs in parameters against ONE single-task model (encoder + its head).
        meta["parameters"] = {"multi_task": multi_count, "single_task_mean": sum(single_counts) / len(single_counts),
                              "ratio_to_one_single_task_model": multi_count * len(single_counts) / sum(single_counts)}
    files = write_transfer_report(rows, out, meta)
    first = multi_runs[seeds[0]]
    if first.save_model and (first.run_dir / "config.json").is_file():
        files["card"] = _card_with_table(recipe, first, records[(seeds[0], "multi_task")], rows)
    log(f"hf-mtl: transfer report in {out} ({', '.join(sorted(p.name for p in files.values()))})")
    return {"rows": rows, "files": files, "runs": {key: record for key, record in records.items()}}


def _main_metrics(recipe: Recipe) -> dict[str, str]:
    from ..evaluation import main_metric

    return {task.name: main_metric(task.placeholder_spec()) for task in recipe.tasks}


def _card_with_table(recipe: Recipe, run: PlannedRun, record: RunRecord, rows: list[dict[str, Any]]) -> Path:
    """Rewrite the kept multi-task model's card with its results and the transfer table."""
    from ..hub.model_card import save_model_card

    training = {k: v for k, v in recipe.training.items() if k in (
        "weighting", "sampling", "batching", "learning_rate", "per_device_train_batch_size", "num_train_epochs",
        "max_seq_length", "head_lr_multiplier", "loss_scaling")}
    return save_model_card(run.run_dir, eval_results=record.scores, recipe=recipe.card_text(),
                           training={**training, "seed": run.seed, "optimizer_steps_done": record.steps},
                           transfer_table=card_rows(rows))
