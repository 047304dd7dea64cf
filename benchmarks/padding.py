"""Target 7: step time of K-task mixed training on rows of their own lengths, with the batch's rows packed into one
encoder call (`encoder_packing`, the model's default) against one padded call per batch.

Every other measurement pads each batch to exactly `seq_len`, so that its arms do equal work. This one is about
padding: rows keep their lengths, up to twice `seq_len` (64 tokens by default, the recipes' `max_seq_length`; generated
rows join 1 to that / 8 sentences, `--data-dir` corpora come as they are) and the collator pads each batch to its
longest row. The arms train the same model on the same rows in the same order (same seed, static weighting): only the
encoder calls differ, and the loss and gradients are the same up to rounding. Reported beside the goal: length-sorted
calls (`encoder_packing=False`, `encoder_length_buckets=2`, the fallback for encoders that cannot take packed rows;
at 32 tokens a second call costs more than the positions it could save, and the plan keeps every batch whole) and
`group_by_length` batches with packed rows (they change which rows share a step). Steps differ in cost here (a batch
of long rows takes longer), so an arm's time is its mean step (total time over the timed steps), not the median the
other measurements use. Goal: <= 0.95, a saving the noise of one run cannot make up.
"""

from __future__ import annotations

from transformers import PrinterCallback, set_seed

from hf_mtl import MultiTaskCollator, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments, TaskSpec
from hf_mtl.data import preprocess_task

from .arms import StepTimer, common_arguments, summarize
from .common import interleaved, log, median, target, time_ratios
from .data import natural_length_tasks


ARMS = {
    "whole": {"packing": False, "buckets": 1},
    "packed": {"packing": True, "buckets": 2},
    "buckets": {"packing": False, "buckets": 2},
    "grouped": {"packing": True, "buckets": 2, "group_by_length": True},
}
LABELS = {
    "packed": "Packed rows (encoder_packing, one call) / one padded call",
    "buckets": "Length-sorted encoder calls (encoder_length_buckets=2, packing off) / one padded call",
    "grouped": "group_by_length batches + packed rows / one padded call",
}
GOAL = 0.95


def run(context) -> dict:
    settings = context.settings
    seq_len = 2 * settings.seq_len
    specs, raw = natural_length_tasks(settings, seq_len)
    datasets = {spec["name"]: preprocess_task(raw[spec["name"]], TaskSpec.from_any(spec), context.tokenizer, seq_len)
                for spec in specs}
    set_seed(settings.seed)
    model = MultiTaskModel.from_backbone(context.backbone, specs)
    runs = {arm: [] for arm in ARMS}
    for repeat in range(settings.repeats):
        for arm in interleaved(list(ARMS), repeat):
            record = _train(context, model, specs, datasets, seq_len, **ARMS[arm])
            runs[arm].append(record)
            log(f"padding, repeat {repeat + 1}/{settings.repeats}, {arm}: {record['step_time']:.3f} s/step, "
                f"{record['padded_positions']:.0f} positions through the encoder per step")
    targets, details = [], {}
    k = len(specs)
    for arm, limit in (("packed", GOAL), ("buckets", None), ("grouped", None)):
        ratio, cpu = time_ratios(runs[arm], runs["whole"])
        positions = median(record["padded_positions"] for record in runs[arm]) / median(
            record["padded_positions"] for record in runs["whole"])
        targets.append(target(
            "7", f"{LABELS[arm]}, K={k} mixed, rows of their own lengths", ratio["ratio"], "<=" if limit else "report", limit,
            detail=f"encoder positions {positions:.2f}x; per-repeat {ratio['ratio_min']}-{ratio['ratio_max']}; "
                   f"CPU time {cpu['ratio']}",
            spread=(ratio["ratio_min"], ratio["ratio_max"]), cpu_value=cpu["ratio"],
        ))
        details[arm] = {**ratio, "ratio_cpu": cpu["ratio"], "positions_ratio": round(positions, 4),
                        "median_step_time": median(record["step_time"] for record in runs[arm])}
    details["whole"] = {"median_step_time": median(record["step_time"] for record in runs["whole"])}
    return {"targets": targets, "details": {"num_tasks": k, "max_seq_length": seq_len, "arms": details}}


def _train(context, model, specs, datasets, seq_len: int, packing: bool, buckets: int,
           group_by_length: bool = False) -> dict:
    """A fresh mixed-batch trainer on `model` with `packing` and `buckets`; its timing summary and the encoder
    positions per step."""
    settings = context.settings
    model.config.encoder_packing, model.config.encoder_length_buckets = packing, buckets
    steps = settings.warmup_steps + settings.steps
    arguments = common_arguments(settings, context.workdir / "padding", steps)
    args = MultiTaskTrainingArguments(
        **arguments, max_seq_length=seq_len, batching="mixed", weighting="static",
        train_sampling_strategy="group_by_length" if group_by_length else "random",
    )
    trainer = MultiTaskTrainer(
        model=model, args=args, processing_class=context.tokenizer, train_dataset=datasets,
        data_collator=MultiTaskCollator(context.tokenizer, [TaskSpec.from_any(spec) for spec in specs]),
    )
    trainer.remove_callback(PrinterCallback)
    positions = []
    handle = model.encoder.register_forward_pre_hook(
        lambda module, args, kwargs: positions.append(kwargs["input_ids"].numel()) if module.training else None,
        with_kwargs=True,
    )
    timer = StepTimer(trainer)
    try:
        trainer.train()
    finally:
        handle.remove()
    record = summarize(timer.records, settings.warmup_steps, settings.batch_size)
    timed = timer.records[settings.warmup_steps:] or timer.records[-1:]
    record["step_time"] = sum(step["interval"] for step in timed) / len(timed)  # the mean: see the module docstring
    record["cpu_time"] = sum(step["cpu"] for step in timed) / len(timed)
    record["padded_positions"] = sum(positions) / steps  # every step, warm-up included
    return record
