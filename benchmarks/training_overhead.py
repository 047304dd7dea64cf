"""Target 1: step time of `MultiTaskTrainer` (static weighting) against a plain `transformers.Trainer`.

The goal compares the SAME one-task `MultiTaskModel` under both trainers (same rows, batch size, sequence length,
optimizer): the ratio is then the cost of the multi-task machinery alone (task sampler, collator, loss tracking,
weighting, callback). The pairing with `AutoModelForSequenceClassification` (what a single-task user trains) is
reported beside it: it adds the difference between the two models (mean pooling + a per-task dense head vs BERT's
pooler + classifier), which is not trainer overhead.
"""

from __future__ import annotations

from .arms import run_training
from .common import interleaved, log, median, paired_ratios, target


ARMS = ["hf_trainer", "mtl_trainer", "hf_model"]


def run(context) -> dict:
    settings = context.settings
    runs = {arm: [] for arm in ARMS}
    for repeat in range(settings.repeats):
        for arm in interleaved(ARMS, repeat):
            record = run_training(context, arm, settings.steps)
            runs[arm].append(record)
            log(f"training overhead, repeat {repeat + 1}/{settings.repeats}, {arm}: {record['step_time']:.3f} s/step")

    def values(arm, key):
        return [record[key] for record in runs[arm]]

    step = paired_ratios(values("mtl_trainer", "step_time"), values("hf_trainer", "step_time"))
    compute = paired_ratios(values("mtl_trainer", "compute_time"), values("hf_trainer", "compute_time"))
    cpu = paired_ratios(values("mtl_trainer", "cpu_time"), values("hf_trainer", "cpu_time"))
    versus_hf_model = paired_ratios(values("mtl_trainer", "step_time"), values("hf_model", "step_time"))
    model_only = paired_ratios(values("hf_trainer", "step_time"), values("hf_model", "step_time"))
    detail = (f"median step {median(values('mtl_trainer', 'step_time')):.3f} s vs "
              f"{median(values('hf_trainer', 'step_time')):.3f} s; per-repeat ratios {step['ratio_min']}-{step['ratio_max']} "
              f"over {step['pairs']} pairs; CPU time {cpu['ratio']}; compute only (forward+backward+optimizer) {compute['ratio']}")
    return {
        "targets": [
            target("1", "Training step: MultiTaskTrainer (static) / Trainer, same MultiTaskModel", step["ratio"], "<=", 1.05,
                   detail=detail, spread=(step["ratio_min"], step["ratio_max"]), cpu_value=cpu["ratio"]),
            target("1b", "Training step: MultiTaskTrainer / Trainer + AutoModelForSequenceClassification",
                   versus_hf_model["ratio"], "report",
                   None, detail=f"the model alone (Trainer + MultiTaskModel / Trainer + AutoModelFor...): {model_only['ratio']}"),
        ],
        "details": {
            "arms": {arm: {"median_step_time": median(values(arm, "step_time")),
                           "median_compute_time": median(values(arm, "compute_time")),
                           "median_cpu_time": median(values(arm, "cpu_time")),
                           "step_times_per_repeat": values(arm, "step_time")} for arm in ARMS},
            "ratio_step": step, "ratio_compute": compute, "ratio_cpu": cpu, "ratio_vs_hf_model": versus_hf_model,
            "ratio_model_only": model_only,
        },
    }
