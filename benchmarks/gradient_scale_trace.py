"""Diagnostic: the gradient norm each task sends to the optimizer along a dev-suite multi-task run, by phase of training.

With per-task batches every optimizer step belongs to one task; the norm is read at `on_pre_optimizer_step`, i.e.
after Trainer's clipping (`max_grad_norm`), for the shared encoder and for all parameters.

    HF_MTL_DATA=/path/to/data python benchmarks/gradient_scale_trace.py SEED STEPS OUT_DIR [key=value recipe overrides...]

Writes OUT_DIR/gradtrace.json (one record per step) and prints the table kept in
results/dev_suite/gradient_scale_seed2.txt (seed 2, 1250 steps, with `model.task_embedding=cls`, the defaults then).
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from hf_mtl.recipes import run as recipe_run
from hf_mtl.recipes.loader import load_recipe
from hf_mtl.training.trainer import MultiTaskTrainer


PHASES = [(0, 50), (50, 200), (200, 600), (600, 10**9)]


def _norm(parameters) -> float:
    grads = [p.grad for p in parameters if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


class GradientScaleTrace(TrainerCallback):
    def __init__(self, trainer: MultiTaskTrainer):
        self.trainer, self.records = trainer, []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        tasks, self.trainer.step_tasks = sorted(self.trainer.step_tasks), set()
        self.records.append({"step": state.global_step, "tasks": tasks,
                             "shared": _norm(p for _, p in model.shared_parameters()), "total": _norm(model.parameters())})


class TracedTrainer(MultiTaskTrainer):
    """Remembers which tasks the micro-batches of the current step held."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_tasks: set[str] = set()
        self.trace = GradientScaleTrace(self)
        self.add_callback(self.trace)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        if model.training and outputs.task_losses:
            self.step_tasks.update(outputs.task_losses)
        return (loss, outputs) if return_outputs else loss


def main(seed: int, steps: int, out: str, overrides: list[str]) -> None:
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "dev_suite_local.yaml",
                         [f"training.seed={seed}", *overrides])
    recipe_run.MultiTaskTrainer = TracedTrainer  # the recipe runner builds this class
    result = recipe_run.train_recipe(recipe, changes={"max_steps": steps, "output_dir": out, "refine_steps": 0},
                                     save_model=False, write_reports=False)
    records = result.trainer.trace.records
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "gradtrace.json").write_text(json.dumps(records))
    by_task = collections.defaultdict(list)
    for record in records:
        for task in record["tasks"]:
            by_task[task].append(record)
    print("task     steps        n  shared  total")
    for task, rows in by_task.items():
        for low, high in PHASES:
            chosen = [r for r in rows if low <= r["step"] < high]
            if chosen:
                shared = sum(r["shared"] for r in chosen) / len(chosen)
                total = sum(r["total"] for r in chosen) / len(chosen)
                print(f"{task:8s} {low:4d}-{min(high, steps):<5d} {len(chosen):4d}  {shared:.2f}   {total:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:])
