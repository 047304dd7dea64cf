"""Target 5: share of training time spent fetching batches (task sampling, reading rows, collation).

Measured inside real `MultiTaskTrainer` runs: the time spent in `Trainer.get_batch_samples` (which draws the
step's micro-batches from the dataloader: the batch sampler, `MultiTaskDataset.__getitems__`, the collator) over the
time between consecutive optimizer steps. Reuses the runs of the training and weighting measurements when they ran
in this invocation, else trains its own. The plain Trainer's share is given for comparison.
"""

from __future__ import annotations

from .arms import run_training
from .common import log, median, target


CASES = {"mtl_trainer": "1 task, per-task batches", "mtl_static": "K tasks, mixed batches"}


def run(context) -> dict:
    settings = context.settings
    for arm in list(CASES) + ["hf_trainer"]:
        if not context.runs.get(arm):
            for _repeat in range(max(1, min(settings.repeats, 2))):
                record = run_training(context, arm, settings.steps)
                log(f"data pipeline, {arm}: {100 * record['data_share']:.2f}% of step time")
    targets, details = [], {}
    k = len(context.specs)
    for arm, label in CASES.items():
        runs = context.runs[arm]
        share, collate = median(r["data_share"] for r in runs), median(r["collate_share"] for r in runs)
        targets.append(target("5", f"Data pipeline share of step time, MultiTaskTrainer ({label.replace('K', f'K={k}')})",
                              share, "<", 0.05, unit="share",
                              detail=f"collation alone {100 * collate:.2f}%; over {len(runs)} run(s)"))
        details[arm] = {"data_share": share, "collate_share": collate, "runs": len(runs)}
    plain = context.runs["hf_trainer"]
    details["hf_trainer"] = {"data_share": median(r["data_share"] for r in plain),
                             "collate_share": median(r["collate_share"] for r in plain), "runs": len(plain)}
    targets[-1]["detail"] += f"; plain Trainer: {100 * details['hf_trainer']['data_share']:.2f}%"
    return {"targets": targets, "details": details}
