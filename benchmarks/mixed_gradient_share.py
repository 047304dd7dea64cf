"""Diagnostic: under mixed batches (every step holds rows of several tasks, their mean losses summed), how much of the
shared encoder's gradient each task contributes.

Every `EVERY` steps the trainer computes each present task's gradient on the shared parameters separately (one
extra backward per task, before clipping) and records its norm, its cosine with the summed gradient, and the norm of
the sum. A task whose gradient is small beside the others' steers the shared encoder little, whatever its loss.
The run keeps the full run's learning-rate schedule and stops after STOP steps.

    HF_MTL_DATA=/path/to/data python benchmarks/mixed_gradient_share.py SEED STOP OUT_DIR [key=value overrides...]
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


EVERY = 10
PHASES = [(0, 50), (50, 200), (200, 600), (600, 10**9)]


class StopAfter(TrainerCallback):
    def __init__(self, steps: int):
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.steps:
            control.should_training_stop = True


class ShareTracedTrainer(MultiTaskTrainer):
    def __init__(self, *args, stop: int = 10**9, **kwargs):
        super().__init__(*args, **kwargs)
        self.records: list[dict] = []
        self.add_callback(StopAfter(stop))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        step = self.state.global_step
        if model.training and outputs.task_losses and step % EVERY == 0:
            shared = [p for _, p in self.accelerator.unwrap_model(model).shared_parameters()]
            flat = {}
            for name, task_loss in outputs.task_losses.items():
                grads = torch.autograd.grad(task_loss, shared, retain_graph=True, allow_unused=True)
                flat[name] = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                        for g, p in zip(grads, shared)])
            total = sum(flat.values())
            record = {"step": step, "sum": float(total.norm()), "tasks": {}}
            for name, grad in flat.items():
                record["tasks"][name] = {"norm": float(grad.norm()),
                                         "cos_sum": float(torch.nn.functional.cosine_similarity(grad, total, dim=0)),
                                         "loss": float(outputs.task_losses[name].detach()),
                                         "rows": int(outputs.task_indices[name].numel())}
            self.records.append(record)
        return (loss, outputs) if return_outputs else loss


def main(seed: int, stop: int, out: str, overrides: list[str]) -> None:
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "dev_suite_local.yaml",
                         [f"training.seed={seed}", "training.batching=mixed", *overrides])

    def build(*args, **kwargs):
        return ShareTracedTrainer(*args, stop=stop, **kwargs)

    recipe_run.MultiTaskTrainer = build  # the recipe runner builds this class
    result = recipe_run.train_recipe(recipe, changes={"output_dir": out, "refine_steps": 0},
                                     save_model=False, write_reports=False)
    records = result.trainer.records
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "gradshare.json").write_text(json.dumps(records))
    print(f"# mixed batches, seed {seed}, per-task gradient on the shared encoder every {EVERY} steps, before clipping")
    print("task     steps        n   norm  cos(sum)  share   loss  (share: norm*cos / |sum|, the task's part of the sum)")
    by_task = collections.defaultdict(list)
    for record in records:
        for name, values in record["tasks"].items():
            by_task[name].append((record["step"], record["sum"], values))
    for name, rows in sorted(by_task.items()):
        for low, high in PHASES:
            chosen = [r for r in rows if low <= r[0] < high]
            if not chosen:
                continue
            norm = sum(v["norm"] for _, _, v in chosen) / len(chosen)
            cos = sum(v["cos_sum"] for _, _, v in chosen) / len(chosen)
            loss = sum(v["loss"] for _, _, v in chosen) / len(chosen)
            share = sum(v["norm"] * v["cos_sum"] / s for _, s, v in chosen) / len(chosen)
            print(f"{name:8s} {low:4d}-{min(high, stop):<5d} {len(chosen):4d}  {norm:6.2f}  {cos:6.2f}  {share:5.2f}  {loss:6.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:])
