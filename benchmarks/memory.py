"""Target 4: memory. (a) Peak RSS of multi-task training vs a plain Trainer; (b) bytes on disk of K LoRA adapters +
one backbone vs K fully fine-tuned models.

(a) Peak RSS only grows within a process, so every run is a fresh process (`worker.py`) that imports the same
libraries, tokenises the same data, builds its model and trains `memory_steps` steps; arms alternate between
repeats. The goal pairs the same one-task `MultiTaskModel` under `MultiTaskTrainer` and under `Trainer`; the K-task
mixed run is reported beside it.

(b) The adapters are written with peft itself (`get_peft_model` + `save_pretrained`: the PEFT format, LoRA r=8 on
query/value plus the task's classifier, as `LoraConfig(task_type=SEQ_CLS|TOKEN_CLS)` saves it). hf_mtl's own
per-task LoRA sharing exports the same PEFT format; `lora_layout` is the one place to point at it once it lands.
Configs and weights are counted on both sides; tokenizer files (the same for every model) are not.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .arms import hf_model
from .common import interleaved, log, median, paired_ratios, target
from .worker import launch


# The quick preset leaves out the K-task arms: static (reported in 4a), and the two ways of taking per-task gradients,
# at the representation (gradnorm_rep, one backward pass: target 4c) and of every shared parameter (pcgrad, reported).
RSS_ARMS = ["hf_trainer", "mtl_trainer", "mtl_static", "mtl_gradnorm_rep", "mtl_pcgrad"]
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"])


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def lora_layout(context, root: Path) -> dict[str, int]:
    """Bytes of one PEFT adapter directory per task (written by peft on a plain model of the task's type)."""
    from peft import LoraConfig, TaskType, get_peft_model

    sizes = {}
    for spec in context.specs:
        task_type = TaskType.TOKEN_CLS if spec["type"] == "token_classification" else TaskType.SEQ_CLS
        model = get_peft_model(hf_model(context.backbone, spec), LoraConfig(task_type=task_type, **LORA))
        model.save_pretrained(root / "adapters" / spec["name"])
        sizes[spec["name"]] = directory_bytes(root / "adapters" / spec["name"])
    return sizes


def disk_footprint(context) -> dict:
    from transformers import AutoModel

    root = context.workdir / "disk"
    try:
        full = {}
        for spec in context.specs:
            hf_model(context.backbone, spec).save_pretrained(root / "full" / spec["name"])
            full[spec["name"]] = directory_bytes(root / "full" / spec["name"])
        adapters = lora_layout(context, root)
        AutoModel.from_pretrained(context.backbone).save_pretrained(root / "backbone")
        backbone = directory_bytes(root / "backbone")
        context.model("mtl_k").save_pretrained(root / "multitask")
        multitask = directory_bytes(root / "multitask")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"full_models": full, "adapters": adapters, "backbone": backbone, "hard_sharing_checkpoint": multitask,
            "lora": LORA}


def run(context) -> dict:
    settings = context.settings
    arms = RSS_ARMS[:2] if settings.preset == "quick" else RSS_ARMS
    ranks = {arm: [] for arm in arms}
    for repeat in range(settings.memory_repeats):
        for arm in interleaved(arms, repeat):
            result = launch(context, arm, settings.memory_steps, context.workdir / f"memory-{arm}-{repeat}")[0]
            ranks[arm].append(result)
            log(f"memory, repeat {repeat + 1}/{settings.memory_repeats}, {arm}: peak RSS {result['peak_rss_mb']:.0f} MiB "
                f"({result['rss_before_training_mb']:.0f} MiB before training)")

    def values(arm, key):
        return [result[key] for result in ranks[arm]]

    def growth(arm):
        return [r["peak_rss_mb"] - r["rss_before_training_mb"] for r in ranks[arm]]

    peak = paired_ratios(values("mtl_trainer", "peak_rss_mb"), values("hf_trainer", "peak_rss_mb"))
    peak_k = {"ratio": None}
    if "mtl_static" in ranks:
        peak_k = paired_ratios(values("mtl_static", "peak_rss_mb"), values("hf_trainer", "peak_rss_mb"))
    k = len(context.specs)
    gradient_targets = []
    if "mtl_gradnorm_rep" in ranks:
        rep = paired_ratios(values("mtl_gradnorm_rep", "peak_rss_mb"), values("mtl_static", "peak_rss_mb"))
        full = paired_ratios(values("mtl_pcgrad", "peak_rss_mb"), values("mtl_static", "peak_rss_mb"))
        gradient_targets.append(target(
            "4c", f"Peak RSS, K={k} mixed: gradnorm_rep (task gradients at the representation) / static", rep["ratio"],
            "<=", 1.15, spread=(rep["ratio_min"], rep["ratio_max"]),
            detail=f"{median(values('mtl_gradnorm_rep', 'peak_rss_mb')):.0f} vs {median(values('mtl_static', 'peak_rss_mb')):.0f} MiB; "
                   f"pcgrad (every shared parameter, K gradients): {full['ratio']} ({median(values('mtl_pcgrad', 'peak_rss_mb')):.0f} MiB)"))
    disk = disk_footprint(context)
    lora_total = sum(disk["adapters"].values()) + disk["backbone"]
    full_total = sum(disk["full_models"].values())
    mib = 2**20
    return {
        "targets": [
            target("4a", "Peak RSS: MultiTaskTrainer / Trainer, same MultiTaskModel", peak["ratio"], "<=", 1.10,
                   detail=f"{median(values('mtl_trainer', 'peak_rss_mb')):.0f} vs {median(values('hf_trainer', 'peak_rss_mb')):.0f} MiB; "
                          f"growth during training {median(growth('mtl_trainer')):.0f} vs {median(growth('hf_trainer')):.0f} MiB"
                          + (f"; K={k} tasks mixed: {peak_k['ratio']}" if peak_k["ratio"] is not None else ""),
                   spread=(peak["ratio_min"], peak["ratio_max"])),
            target("4b", f"Disk: {k} LoRA adapters + 1 backbone / {k} full fine-tuned models", lora_total / full_total,
                   "report", None,
                   detail=f"{lora_total / mib:.1f} MiB vs {full_total / mib:.1f} MiB (LoRA r={LORA['r']} on query/value + "
                          f"classifier); hf_mtl hard sharing, one checkpoint for all {k} tasks: "
                          f"{disk['hard_sharing_checkpoint'] / mib:.1f} MiB ({disk['hard_sharing_checkpoint'] / full_total:.3f})"),
            *gradient_targets,
        ],
        "details": {
            "peak_rss_mb": {arm: values(arm, "peak_rss_mb") for arm in arms},
            "rss_before_training_mb": {arm: values(arm, "rss_before_training_mb") for arm in arms},
            "cuda_peak_allocated_mb": {arm: values(arm, "cuda_peak_allocated_mb") for arm in arms},
            "ratio_peak_rss": peak, "ratio_peak_rss_k_tasks": peak_k,
            "disk_bytes": disk, "disk_ratio": lora_total / full_total,
        },
    }
